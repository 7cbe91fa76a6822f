# BootTorrent: `make demo` runs the main job, `make test` runs every test.
# Both start with `make deps`, which sets up a fresh Debian 12/13 machine (run as root).

SHELL := /bin/bash
PYTHON := /usr/bin/python3
VENV := .venv
# Everything the daemon, its children and the tests use, from Debian's archive.
APT_PACKAGES := python3 python3-venv python3-pip python3-yaml python3-systemd \
	python3-aiohttp python3-pyroute2 dbus systemd util-linux iproute2 curl \
	dnsmasq-base transmission-daemon transmission-cli python3-libtorrent opentracker aria2 ipxe \
	busybox-static udhcpc debootstrap systemd-container \
	qemu-system-x86 linux-image-amd64 kexec-tools zstd cpio squashfs-tools \
	udpcast mypy python3-rich python3-shtab \
	shim-signed grub-efi-amd64-signed ovmf sbsigntool \
	syslinux syslinux-common mtools dosfstools \
	python3-gi gir1.2-gtk-4.0 gir1.2-adw-1 adwaita-icon-theme fonts-cantarell \
	xvfb at-spi2-core python3-pyatspi \
	xorriso mmdebstrap

.PHONY: deps apt venv test unit integration demo bench scale lint clean fuzz reliability

deps: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

test: deps
	$(VENV)/bin/ruff check .
	mypy --python-executable $(VENV)/bin/python
	$(VENV)/bin/python -m pytest tests

# The hostile-input tests again with a random seed (printed: rerun one with
# BOOTTORRENT_FUZZ_SEED=<seed>) and FUZZ_SCALE times CI's counts.
FUZZ_SCALE ?= 5
fuzz: deps
	seed=$${BOOTTORRENT_FUZZ_SEED:-$$RANDOM$$RANDOM}; echo "fuzz seed: $$seed"; \
	BOOTTORRENT_FUZZ_SEED=$$seed BOOTTORRENT_FUZZ_SCALE=$(FUZZ_SCALE) \
		$(VENV)/bin/python -m pytest tests/integration/test_hostile_input.py -v

# RELIABILITY.md from the records the reliability tests write (build/reliability/).
RELIABILITY_TESTS := tests/integration/test_hostile_input.py \
	tests/integration/test_state_files.py tests/integration/test_integrity.py \
	tests/integration/test_least_privilege.py tests/e2e/test_faults.py \
	"tests/e2e/test_swarm.py::test_a_late_client_boots_from_its_peers_alone_after_the_seed_is_stopped" \
	tests/packaging/test_deb.py::test_make_deb_builds_the_package \
	tests/packaging/test_deb.py::test_polkit_grants_the_manage_action_to_an_authorised_group
reliability: deps
	rm -rf build/reliability
	$(VENV)/bin/python -m pytest $(RELIABILITY_TESTS)
	$(VENV)/bin/python -m tests.reliability

demo: deps
	$(VENV)/bin/python -m boottorrentlab.lab

# The swarm benchmark's figures in README.md (about 55 minutes; the machine should be idle).
bench: deps
	$(VENV)/bin/python -m bench.swarm --repeat 3 \
		--json bench/results/swarm-n16.json --plot bench/results/swarm-n16.png
	$(VENV)/bin/python -m bench.swarm --scaling 1,2,4,8,16,32 \
		--json bench/results/scaling.json --plot bench/results/scaling.png
	$(VENV)/bin/python -m bench.swarm --scaling 1,2,4 --repeat 3 --modes boottorrent,unicast \
		--json bench/results/small-swarms.json
	$(VENV)/bin/python -m bench.swarm --clients 64 --rate 10mbit --modes boottorrent,multicast \
		--json bench/results/swarm-n64-10mbit.json

# The lab simulator (boottorrentlab/devkit/labsim/) at 50, 100 and 200 machines: the
# figures of README.md's "Scale" section, and N=50 with a second server in swarm.role seed
# (about 11 minutes; the machine should be idle). A run that loses a machine still writes
# its figures (and exits 1).
scale: deps
	for n in 50 100 200; do \
		$(VENV)/bin/python -m boottorrentlab.devkit.labsim --machines $$n \
			--json bench/results/scale-n$$n.json; \
	done
	$(VENV)/bin/python -m boottorrentlab.devkit.labsim --machines 50 --seed-servers 1 \
		--json bench/results/scale-n50-two-servers.json

lint: deps
	$(VENV)/bin/ruff check .

# The Debian package, built in a cached Debian trixie root (packaging/build-deb.sh).
.PHONY: deb
deb: apt
	packaging/build-deb.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
