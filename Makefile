# Thin wrapper around CMake: `make demo`, `make test`, `make bench` on a fresh
# Debian 12 machine install what is missing first.
BUILD ?= build
PREFIX ?= /usr/local
JOBS  ?= $(shell nproc)

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := clang llvm cmake g++ make pkg-config libbpf-dev bpftool \
	libelf-dev libdw-dev zlib1g-dev libcli11-dev nlohmann-json3-dev catch2 libpq-dev \
	postgresql postgresql-client python3 python3-psycopg2 tmux procps \
	libclang-rt-14-dev python3-flask gunicorn python3-psycopg python3-sqlalchemy python3-psycopg-pool \
	man-db prometheus chromium python3-yaml systemd

.PHONY: all build deps test test-sanitize fuzz demo bench vmlinux clean install

all: build

# Installs only what dpkg says is missing, so a ready machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# $(PREFIX)/bin/connleak and $(PREFIX)/share/man/man1/connleak.1 (under
# $(DESTDIR) when set, for packaging).
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

test: deps build
	cd $(BUILD) && ctest --output-on-failure
	$(MAKE) --no-print-directory test-sanitize

# The sanitizer build (ASan+UBSan, its own directory): the unit tests, the
# fuzz corpus replayed, and one short real run of the tracer.
SANITIZE_BUILD ?= build-asan
test-sanitize: deps
	cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONNLEAK_SANITIZE=ON >/dev/null
	cmake --build $(SANITIZE_BUILD) -j $(JOBS) --target sanitize_tests
	cd $(SANITIZE_BUILD) && ctest --output-on-failure -L sanitize

# libFuzzer targets (clang, their own directory), FUZZ_SECONDS each; fails
# on the first crash. FUZZ_TARGETS="proc_maps safe_text" runs only those.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONNLEAK_FUZZ=ON \
		-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Builds only what tests/demo.sh runs (connleak, pqclient), quietly: the
# build's output goes to a log, shown (its tail, without make's directory
# lines) only if the build fails.
DEMO_LOG = $(BUILD)/demo-build.log
demo: deps
	@echo "== building connleak and its demo client in $(BUILD)/ (a few minutes the first time; log: $(DEMO_LOG))"
	@mkdir -p $(BUILD)
	@if ! { cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
		cmake --build $(BUILD) -j $(JOBS) --target connleak pqclient; } >$(DEMO_LOG) 2>&1; then \
		grep -Ev '^g?make(\[[0-9]+\])?: (Entering|Leaving) directory' $(DEMO_LOG) | tail -n 30; \
		echo "make demo: the build failed; its whole log is $(DEMO_LOG)" >&2; \
		exit 1; \
	fi
	@tests/demo.sh $(BUILD)/connleak

bench: deps build
	bench/run_all.sh $(BUILD)

# Regenerates the committed vmlinux.h from the running kernel's BTF.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/x86/vmlinux.h

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD) $(FUZZ_BUILD)
