# pod-router: the front door. CMake builds everything under build/; this file
# only names the jobs. `make help` lists them.

MAKEFLAGS   += --no-print-directory
BUILD_DIR   ?= build
FUZZ_DIR    ?= build-fuzz
ASAN_DIR    ?= build-asan
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
JOBS        ?= $(shell nproc)
CMAKE_FLAGS ?=

CXX_SOURCES = $(shell git ls-files '*.cpp' '*.hpp' 2>/dev/null)
LINT_SOURCES = $(shell git ls-files 'common/src/*.cpp' 'controller/src/*.cpp' 'controller/src/**/*.cpp' 2>/dev/null)

.PHONY: all build configure test test-unit test-integration test-asan run fuzz \
        format format-check lint clean help deps bench

all: build

help:
	@echo "make             build the nginx module and the controller into $(BUILD_DIR)/"
	@echo "make run         install what is missing, build, start the local stack"
	@echo "make test        every test tier (unit, fuzz corpus, Redis, nginx); summary last"
	@echo "make test-unit   only the unit tier (no servers); also test-integration"
	@echo "make test-asan   the tests again under ASan and UBSan (all but the nginx module)"
	@echo "make fuzz        every libFuzzer target for FUZZ_SECONDS each (default 30;"
	@echo "                 FUZZ_TARGETS=\"token_verify ...\" for some)"
	@echo "make bench       measure against the static-proxy limit, OpenResty and the seed (~15 min;"
	@echo "                 BENCH_ARGS=--help for options); writes docs/BENCHMARKS.md"
	@echo "make format      clang-format the C++ sources (format-check: only report)"
	@echo "make lint        clang-tidy and cppcheck, warnings are errors"
	@echo "make clean       remove $(BUILD_DIR)/, $(FUZZ_DIR)/ and $(ASAN_DIR)/"

deps:
	scripts/install-deps.sh

# scripts/build.sh is also what the Dockerfiles run (--target controller|module).
$(BUILD_DIR)/CMakeCache.txt:
	scripts/build.sh --configure-only --build-dir $(BUILD_DIR) -- $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/CMakeCache.txt

build: configure
	scripts/build.sh --build-dir $(BUILD_DIR) --jobs $(JOBS)

# CTest runs every tier; its closing summary is the last thing printed.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-unit: CTEST_ARGS = -L unit
test-unit: test

test-integration: CTEST_ARGS = -L integration
test-integration: test

# The same tests with ASan and UBSan, except the module: a sanitized .so
# cannot load into the packaged (unsanitized) nginx.
test-asan:
	cmake -S . -B $(ASAN_DIR) -DPOD_ROUTER_SANITIZE=ON -DPOD_ROUTER_NGINX_MODULE=OFF \
	  -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -LE style

run:
	scripts/run.sh

# Not part of make test: minutes of load on every core, and figures, not
# pass or fail. Installs what it compares against (wrk, OpenResty-style Lua,
# the seed's FastAPI stack) from Debian first.
bench: build
	scripts/install-deps.sh --bench
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

fuzz:
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(FUZZ_DIR) -DPOD_ROUTER_FUZZ=ON \
	  -DPOD_ROUTER_NGINX_MODULE=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_targets
	scripts/run-fuzzers.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

format:
	clang-format -i $(CXX_SOURCES)

format-check:
	clang-format --dry-run --Werror $(CXX_SOURCES)

lint: configure
	clang-tidy -p $(BUILD_DIR) --quiet --warnings-as-errors='*' $(LINT_SOURCES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --std=c++17 --language=c++ -I common/include \
	  --suppress=missingIncludeSystem $(LINT_SOURCES)

clean:
	rm -rf $(BUILD_DIR) $(FUZZ_DIR) $(ASAN_DIR)
