# libTMC — the two commands:
#   make demo   install what is missing, build, run a real multicast demo on this host
#   make test   install what is missing, build, run every test suite (CTest)
BUILD   ?= build
JOBS    ?= $(shell nproc)
PYTHON  ?= /usr/bin/python3
CMAKE_FLAGS ?=
ifneq ($(CI),)
CMAKE_FLAGS += -DTMC_WERROR=ON
endif

.PHONY: all deps configure build test demo bench clean install install-python

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD) -G Ninja -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_FLAGS) >/dev/null

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	@$(BUILD)/examples/tmc-demo

bench: build
	@scripts/run-benchmarks.sh $(BUILD)

install: build
	@cmake --install $(BUILD)

# The Python package libTMC (with its own copy of libtmc.so) into /usr/bin/python3's site
# directory for the install prefix, e.g. /usr/local/lib/python3.11/dist-packages.
install-python: build
	@cmake --install $(BUILD) --component python

clean:
	@rm -rf $(BUILD)
