# Thin wrapper around CMake: `make demo`, `make test`, `make bench` on a fresh
# Debian 12 machine install what is missing first.
BUILD ?= build
PREFIX ?= /usr/local
JOBS  ?= $(shell nproc)

# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := clang llvm cmake g++ make pkg-config libbpf-dev bpftool \
	libelf-dev libdw-dev zlib1g-dev libcli11-dev nlohmann-json3-dev catch2 libpq-dev \
	postgresql postgresql-client python3 python3-psycopg2 tmux procps \
	man-db

.PHONY: all build deps test demo bench vmlinux clean install

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

demo: deps build
	tests/demo.sh $(BUILD)/connleak

bench: deps build
	bench/run_all.sh $(BUILD)

# Regenerates the committed vmlinux.h from the running kernel's BTF.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/x86/vmlinux.h

clean:
	rm -rf $(BUILD)
