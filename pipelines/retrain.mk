# make retrain: train on the (cleaned) $(ROOT), then label $(TEST_DIR) into $(PREDICTIONS).
#   make retrain BACKBONE=efficientnet-lite0 EPOCHS=10
#   make retrain WEIGHTS=none IMAGE_SIZE=128 TEST_DIR=~/unlabelled
# The model is rebuilt only when the images/labels (the dataset stamp of clean-data.mk) or the
# training parameters changed; predictions.json only when the model or TEST_DIR changed.

BACKBONE     ?= efficientnetb0
WEIGHTS      ?=
EPOCHS       ?= 10
HEAD_EPOCHS  ?= 20
IMAGE_SIZE   ?=
SEED         ?= 0
TRAIN_ARGS   ?=
MODEL        ?= models/$(notdir $(abspath $(ROOT))).keras
TEST_DIR     ?= test_images
PREDICTIONS  ?= predictions.json
PREDICT_DIR_ARGS ?=

TRAIN_FLAGS = --backbone $(BACKBONE) --epochs $(EPOCHS) --head-epochs $(HEAD_EPOCHS) --seed $(SEED) \
  $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) $(TRAIN_ARGS)
TRAIN_PARAMS = $(STAMPS)/params-train-$(subst /,_,$(MODEL))

.PHONY: retrain
retrain: $(MODEL) ## train EfficientNetB0 on the cleaned $(ROOT), then predictions.json for $(TEST_DIR)
	@if [ -d "$(TEST_DIR)" ]; then $(MAKE) --no-print-directory $(PREDICTIONS); \
	else echo "retrain: no TEST_DIR '$(TEST_DIR)'; pass TEST_DIR=folder to write $(PREDICTIONS)"; fi

$(TRAIN_PARAMS): FORCE
	@$(STATE_PY) params $@ $(TRAIN_FLAGS)

$(MODEL): $(STAMPS)/dataset $(TRAIN_PARAMS)
	@mkdir -p $(dir $(MODEL))
	$(CLEANER) train --root $(ROOT) --out $(MODEL) $(TRAIN_FLAGS)

$(PREDICTIONS): $(MODEL) $(TEST_DIR) $(wildcard $(TEST_DIR)/*)
	$(CLEANER) predict-dir $(TEST_DIR) --model $(MODEL) --out $@ $(PREDICT_DIR_ARGS)
