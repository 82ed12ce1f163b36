# The two commands a newcomer runs on a fresh machine:
#   make test   installs missing Debian packages (when run as root), then builds and runs the
#               whole suite in every flavour: release, asan (ASan+UBSan), tsan, and clang-16
#               with -Wthread-safety -Werror.
#   make demo   builds and runs the project's main program.
# Other targets: make bench (the benchmark binary with repetitions), make bench-loaded (the
# same filter idle, then beside a busy core: scripts/bench-idle-loaded.sh), make format.

PRESETS ?= release asan tsan clang
BENCH_FILTER ?= .

.PHONY: all deps test demo bench bench-loaded format clean $(addprefix test-,$(PRESETS) debug)

all: test

deps:
	@bash scripts/install-deps.sh

test: deps
	@set -e; for preset in $(PRESETS); do \
	  echo "=== plexus: $$preset ==="; \
	  cmake --preset $$preset >/dev/null; \
	  cmake --build --preset $$preset; \
	  ctest --preset $$preset; \
	done
	@echo "=== plexus: all flavours passed: $(PRESETS) ==="

$(addprefix test-,$(PRESETS) debug): test-%: deps
	cmake --preset $* >/dev/null
	cmake --build --preset $*
	ctest --preset $*

demo: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target plexus_sim
	./build/release/apps/plexus_sim

bench: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target plexus_bench
	./build/release/bench/plexus_bench --benchmark_filter='$(BENCH_FILTER)' \
	  --benchmark_repetitions=7 --benchmark_report_aggregates_only=true

bench-loaded: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target plexus_bench
	bash scripts/bench-idle-loaded.sh '$(BENCH_FILTER)'

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf build
