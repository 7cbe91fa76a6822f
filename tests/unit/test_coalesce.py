"""Client change signals are merged per machine and sent at a bounded rate."""

import asyncio

from boottorrentd.bus.coalesce import Coalescer


def run(coro):
    return asyncio.run(coro)


def test_changes_of_one_machine_merge_into_one_signal_with_every_field():
    sent: list[tuple[object, set[str]]] = []

    async def scenario():
        c = Coalescer(lambda key, fields: sent.append((key, fields)), interval=0.01)
        c.changed("m1", {"progress"})
        c.changed("m1", {"down_rate", "progress"})
        c.changed("m1", {"peers"})
        await asyncio.sleep(0.05)

    run(scenario())
    assert sent == [("m1", {"progress", "down_rate", "peers"})]


def test_a_change_that_must_not_wait_goes_out_at_once_with_what_waited():
    sent: list[tuple[object, set[str]]] = []

    async def scenario():
        c = Coalescer(lambda key, fields: sent.append((key, fields)), interval=10)
        c.changed("m1", {"progress"})
        c.changed("m1", {"stage"}, now=True)
        c.close()

    run(scenario())
    # Nothing was left for close to send.
    assert sent == [("m1", {"progress", "stage"})]


def test_at_most_batch_signals_per_tick_oldest_first_whatever_the_number_of_machines():
    ticks: list[list[object]] = []

    async def scenario():
        c = Coalescer(lambda key, fields: ticks[-1].append(key), interval=10, batch=3)
        for i in range(8):
            c.changed(f"m{i}", {"progress"})
        # m0 changes again: it keeps its place in the queue, and sends once.
        c.changed("m0", {"peers"})
        for _ in range(4):
            ticks.append([])
            c.tick()
        c.close()

    run(scenario())
    assert ticks == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6", "m7"], []]


def test_close_sends_everything_that_waits_and_only_once():
    sent: list[object] = []

    async def scenario():
        c = Coalescer(lambda key, fields: sent.append(key), interval=0.01)
        c.changed("a", {"progress"})
        c.changed("b", {"progress"})
        c.close()
        await asyncio.sleep(0.05)

    run(scenario())
    assert sent == ["a", "b"]
