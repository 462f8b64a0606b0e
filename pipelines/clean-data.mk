# make clean-data: scan -> dedupe (dry run: duplicates.json, so that predict keeps each group in
# one fold) -> out-of-fold predict (several backbones) -> separate --apply -> dedupe --apply
# (stops, exit 1, when the plan would quarantine more than DEDUPE_MAX_FRACTION of a class) ->
# report, on $(ROOT). Every variable below can be overridden:
#   make clean-data ROOT=~/faces BACKBONES="efficientnet-lite0 spectrum" FOLDS=5 RULE=mean
# The default voters are the two strongest texture backbones (bench/README "Planted label
# errors"); a file moves when their mean probability of the other class reaches the lowest
# threshold (from MIN_CONFIDENCE up, default 0.7) at which the moves' precision, estimated on
# this dataset by `cleaner separate`, reaches TARGET_PRECISION (0.9); when none does nothing
# moves and the candidates are listed for review. TARGET_PRECISION=0 gives the fixed
# MIN_CONFIDENCE threshold instead (bench/README "Move precision, estimated"). The estimate is
# checked on predict's planted run every time: when the check fails nothing moves by the target.
# The review list keeps the REVIEW_BUDGET (200) files likeliest to be misfiled.
#
# Stages are file targets under $(ROOT)/.cleaner/ and re-run only when their inputs changed:
# `cleaner scan` runs every time (incremental, cheap) and rewrites the content stamp
# .cleaner/stamps/dataset only when an image, its label or its status changed; each stage also
# depends on a stamp of its own parameters. After a successful run the dataset stamp is moved to
# the cleaned state, so a second `make clean-data` with nothing changed does nothing.
# `make -B clean-data` (or touching a file) forces another pass.

STATE          = $(ROOT)/.cleaner
STAMPS         = $(STATE)/stamps
PREDS_DIR     ?= $(STATE)/preds
BACKBONES     ?= efficientnet-lite2-gram efficientnet-lite1-gram
FOLDS         ?= 5
PREDICT_ARGS  ?=
RULE          ?= mean
TARGET_PRECISION ?= 0.9
REVIEW_BUDGET ?= 200
MIN_CONFIDENCE ?=
SEPARATE_ARGS ?=
DEDUPE_METHOD ?= phash
MAX_DISTANCE  ?= 10
DEDUPE_ARGS   ?=
DEDUPE_MAX_FRACTION ?= 0.1
REPORT        ?= $(STATE)/report.html
STATE_PY       = $(BIN)/python pipelines/state.py
# per-backbone extra flags: PREDICT_ARGS_efficientnet-lite0="--image-size 160"
PRED_FILES     = $(foreach b,$(BACKBONES),$(PREDS_DIR)/$(b).json)

.PHONY: clean-data FORCE
FORCE:
.PRECIOUS: $(STAMPS)/params-predict-% $(PREDS_DIR)/%.json

clean-data: $(STAMPS)/clean-data ## scan, dedupe (plan), out-of-fold predict, separate --apply, dedupe --apply, report on $(ROOT)
	@echo "clean-data: done on $(ROOT) (plans in $(STATE)/plans, duplicates in $(STATE)/duplicates.json, undo with: $(CLEANER) undo --root $(ROOT))"

# the scan always runs; the stamp only moves when the content changed
$(STAMPS)/dataset: FORCE $(VENV)/.installed
	@mkdir -p $(STAMPS)
	$(CLEANER) scan --root $(ROOT) --json > $(STAMPS)/scan.json
	@$(STATE_PY) digest $(ROOT) $@

$(STAMPS)/params-predict-%: FORCE
	@$(STATE_PY) params $@ $(FOLDS) $(PREDICT_ARGS) $(PREDICT_ARGS_$*)

$(STAMPS)/params-dedupe-plan: FORCE
	@$(STATE_PY) params $@ $(DEDUPE_METHOD) $(MAX_DISTANCE) $(DEDUPE_ARGS)

# duplicate groups before predicting: the folds keep every group together (a dry run, moves
# nothing; the --apply below runs on the relabelled tree)
$(STAMPS)/dedupe-plan: $(STAMPS)/dataset $(STAMPS)/params-dedupe-plan
	$(CLEANER) dedupe --root $(ROOT) --method $(DEDUPE_METHOD) --max-distance $(MAX_DISTANCE) $(DEDUPE_ARGS) --json > $(STAMPS)/dedupe-plan.json
	@touch $@

$(PREDS_DIR)/%.json: $(STAMPS)/dataset $(STAMPS)/dedupe-plan $(STAMPS)/params-predict-%
	@mkdir -p $(PREDS_DIR)
	$(CLEANER) predict --root $(ROOT) --backbone $* --folds $(FOLDS) $(PREDICT_ARGS) $(PREDICT_ARGS_$*) --out $@

$(STAMPS)/params-separate: FORCE
	@$(STATE_PY) params $@ $(RULE) $(TARGET_PRECISION) $(REVIEW_BUDGET) $(MIN_CONFIDENCE) $(SEPARATE_ARGS) $(PRED_FILES)

$(STAMPS)/separate: $(PRED_FILES) $(STAMPS)/params-separate
	$(CLEANER) separate --root $(ROOT) --predictions $(PRED_FILES) --rule $(RULE) --target-precision $(TARGET_PRECISION) --review-budget $(REVIEW_BUDGET) $(if $(MIN_CONFIDENCE),--min-confidence $(MIN_CONFIDENCE)) $(SEPARATE_ARGS) --apply
	@touch $@

$(STAMPS)/params-dedupe: FORCE
	@$(STATE_PY) params $@ $(DEDUPE_METHOD) $(MAX_DISTANCE) $(DEDUPE_MAX_FRACTION) $(DEDUPE_ARGS)

$(STAMPS)/dedupe: $(STAMPS)/separate $(STAMPS)/params-dedupe
	$(CLEANER) dedupe --root $(ROOT) --method $(DEDUPE_METHOD) --max-distance $(MAX_DISTANCE) --max-fraction $(DEDUPE_MAX_FRACTION) $(DEDUPE_ARGS) --apply
	@touch $@

# the cleaned state becomes the new baseline: re-stamp the dataset, then every output after it
$(STAMPS)/clean-data: $(STAMPS)/dedupe
	$(CLEANER) scan --root $(ROOT) --json > $(STAMPS)/scan.json
	@$(STATE_PY) digest $(ROOT) $(STAMPS)/dataset
	@touch $(STAMPS)/dedupe-plan
	@touch $(PRED_FILES)
	@touch $(STAMPS)/separate
	@touch $(STAMPS)/dedupe
	@# report (issue 7): one page on the dataset's problems; skipped if the command is missing
	@if $(CLEANER) report --help >/dev/null 2>&1; then \
	  $(CLEANER) report --root $(ROOT) --out $(REPORT) && echo "report: $(REPORT)"; \
	else echo "report: SKIPPED (cleaner report is not available in this build)"; fi
	@touch $@
