"""Several servers, one swarm: a second daemon in swarm.role seed beside the full one.

Both hold the same OS (same files, same infohash); each lists the other's tracker in
swarm.other_trackers, so the torrent the machines get names both trackers and each seed
announces to both. Four simulated machines boot from the full server.
"""

import pytest

from boottorrentlab.devkit.labsim import LabSim, SimConfig, SimResult

MACHINES = 4


def simulate(config: SimConfig) -> SimResult:
    lab = LabSim(config)
    with lab:
        result = lab.run()
    if result.failures:
        print(f"\nlab simulator work folder: {lab.workdir}")
    else:
        lab.remove_files()
    return result


@pytest.fixture(scope="module")
def one_server() -> SimResult:
    return simulate(SimConfig(machines=MACHINES))


@pytest.fixture(scope="module")
def two_servers() -> SimResult:
    return simulate(SimConfig(machines=MACHINES, seed_servers=1))


@pytest.fixture(scope="module")
def full_server_stops() -> SimResult:
    return simulate(SimConfig(machines=MACHINES, seed_servers=1, stop_at_progress=0.3,
                             stop_server=0))


def test_machines_of_the_full_server_draw_from_both_servers(one_server: SimResult,
                                                             two_servers: SimResult):
    assert one_server.failures == [] and two_servers.failures == []
    assert two_servers.verified == MACHINES
    full, seed = two_servers.servers_seed_uploaded_bytes
    alone = one_server.seed_uploaded_bytes
    # The seed server carries a real share, and each sends well under what one alone does.
    assert seed > two_servers.size_bytes / 4
    assert full < 0.75 * alone
    assert seed < 0.75 * alone


def test_stopping_the_full_server_mid_download_loses_no_machine(
        full_server_stops: SimResult):
    run = full_server_stops
    assert run.stopped_server_at_s is not None
    assert run.failures == []
    assert run.verified == MACHINES
