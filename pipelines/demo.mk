# make demo: build the seeded demo dataset, run the whole chain on it (clean-data, retrain,
# predict-dir on unseen images) and print planted versus found. A few minutes on 2 cores.
# The demo images are 64-96 px: spectrum (numpy) and EfficientNet-Lite0 features at 64 px vote
# on the labels; the detector is Lite0 (offline ImageNet weights) fine-tuned at 64 px.
DEMO_DIR       ?= data/demo
DEMO_SEED      ?= 0
DEMO_TEST_DIR  ?= $(DEMO_DIR)-unseen
DEMO_BACKBONES ?= spectrum efficientnet-lite0
DEMO_RULE      ?= mean
DEMO_MIN_CONFIDENCE ?= 0.7
DEMO_BACKBONE  ?= efficientnet-lite0
DEMO_IMAGE_SIZE ?= 64
DEMO_EPOCHS    ?= 6
DEMO_MODEL     ?= $(DEMO_DIR)-model/detector.keras
DEMO_PREDICTIONS ?= $(DEMO_DIR)-predictions.json

.PHONY: demo
demo: $(VENV)/.installed ## build the demo dataset, run the whole chain, print planted versus found
	rm -rf $(DEMO_DIR) $(DEMO_TEST_DIR) $(DEMO_TEST_DIR)-src $(dir $(DEMO_MODEL))
	$(CLEANER) demo $(DEMO_DIR) --seed $(DEMO_SEED)
	@# unseen, unlabelled images (another seed, no planted problems) for predict-dir
	$(CLEANER) demo $(DEMO_TEST_DIR)-src --seed $$(( $(DEMO_SEED) + 1000 )) --n 100 --noise 0 --exact 0 --near 0 --corrupt 0 > /dev/null
	$(STATE_PY) unlabel $(DEMO_TEST_DIR)-src $(DEMO_TEST_DIR) $(DEMO_TEST_DIR)-labels.json
	$(MAKE) --no-print-directory clean-data ROOT=$(DEMO_DIR) BACKBONES="$(DEMO_BACKBONES)" \
	  RULE=$(DEMO_RULE) MIN_CONFIDENCE=$(DEMO_MIN_CONFIDENCE) \
	  PREDICT_ARGS_efficientnet-lite0="--image-size $(DEMO_IMAGE_SIZE)"
	$(MAKE) --no-print-directory retrain ROOT=$(DEMO_DIR) BACKBONE=$(DEMO_BACKBONE) \
	  IMAGE_SIZE=$(DEMO_IMAGE_SIZE) EPOCHS=$(DEMO_EPOCHS) MODEL=$(DEMO_MODEL) \
	  TEST_DIR=$(DEMO_TEST_DIR) PREDICTIONS=$(DEMO_PREDICTIONS)
	@echo
	$(CLEANER) evaluate $(DEMO_DIR) --metrics $(basename $(DEMO_MODEL)).metrics.json \
	  --predictions $(DEMO_PREDICTIONS) --labels $(DEMO_TEST_DIR)-labels.json
