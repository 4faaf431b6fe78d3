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

.PHONY: all deps configure build test demo bench peers-rtt loss-sweep bench-peers tapir scale-netns clean install install-python

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

# Side by side across network namespaces (root): libTMC vs raw UDP (and Aeron, when
# AERON_BIN / PEER_BIN hold its programs; bench/peers/build.sh): ping-pong RTT with every
# idle strategy row, and the reliable channel's rate at 1 % loss over its rate at 0 %.
PEERS_OUT ?= results/peers/$(shell date -u +%Y%m%d-%H%M)
peers-rtt: configure
	@cmake --build $(BUILD) -j $(JOBS) --target tmc-e2e-latency
	@TMC_BUILD=$(BUILD) bench/peers/pc_rtt.sh $(PEERS_OUT)/rtt && bench/peers/pc_summarize.py rtt $(PEERS_OUT)/rtt
loss-sweep: configure
	@cmake --build $(BUILD) -j $(JOBS) --target tmc-reliable-mcast
	@TMC_BUILD=$(BUILD) bench/peers/loss_sweep.sh $(PEERS_OUT)/loss

# The side-by-side matrix (root): throughput at 64 B / 1 KiB and 0 / 1 % loss, a size sweep
# up to 1 MiB and ping-pong latency; libTMC rows against raw UDP, ZeroMQ epgm and Aeron (when
# AERON_BIN and PEER_BIN hold its programs, or AERON_SRC and AERON_BUILD name a build of it;
# bench/peers/build.sh); Markdown tables and PNG charts in results/peers/<date>/matrix
# (bench/peers/matrix.sh: QUICK=1 for a smoke run of a few minutes, REPS, SECS, ... narrow it).
bench-peers: configure
	@cmake --build $(BUILD) -j $(JOBS) --target tmc-reliable-mcast tmc-e2e-latency
	@TMC_BUILD=$(BUILD) bench/peers/matrix.sh $(PEERS_OUT)/matrix

# Multicast at 1% loss to many member processes across network namespaces (root): reliable
# and its best-effort baseline at 3 and at 100 members in the same run, rates and CPU of the
# sender and the receivers (bench/scale/scale-netns.sh; SCALE_MEMBERS, SCALE_VARIANTS,
# SCALE_COUNT, SCALE_REPS, ... change it).
scale-netns: configure
	@cmake --build $(BUILD) -j $(JOBS) --target tmc_net_member
	@bench/scale/scale-netns.sh $(BUILD)/tests/net/tmc_net_member

# TAPIR-KV matrix on network namespaces (root): 4 variants x 4 loss rates x {1, 4} clients x
# 3 interleaved repetitions; CSV, Markdown and chart in results/tapir-kv/<date>/
# (bench/tapir-kv/README.md; TAPIR_SECONDS, TAPIR_REPS, ... narrow it).
TAPIR_OUT ?= results/tapir-kv/$(shell date -u +%Y%m%d-%H%M)
tapir: configure
	@cmake --build $(BUILD) -j $(JOBS) --target tapir-kv
	@bench/tapir-kv/scripts/matrix.sh $(BUILD) $(TAPIR_OUT)

install: build
	@cmake --install $(BUILD)

# The Python package libTMC (with its own copy of libtmc.so) into /usr/bin/python3's site
# directory for the install prefix, e.g. /usr/local/lib/python3.11/dist-packages.
install-python: build
	@cmake --install $(BUILD) --component python

clean:
	@rm -rf $(BUILD)
