# make demo: build the seeded demo dataset and run the chain on it.
DEMO_DIR  ?= data/demo
DEMO_SEED ?= 0

.PHONY: demo
demo: $(VENV)/.installed ## build the demo dataset and run the chain on it
	rm -rf $(DEMO_DIR)
	$(CLEANER) demo $(DEMO_DIR) --seed $(DEMO_SEED)
	$(CLEANER) scan --root $(DEMO_DIR)
