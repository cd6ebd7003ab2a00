"""`tokensvc.opaque.RandomPool`: the kernel's random bytes, read in blocks, each handed out
once, never shared with a forked child."""

from __future__ import annotations

import os

from tokensvc.opaque import RandomPool


def test_values_are_fresh_and_of_the_asked_length() -> None:
    pool = RandomPool(size=64)
    drawn = [pool(16) for _ in range(40)]  # ten refills
    assert all(len(value) == 16 for value in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(pool(12)) == 12 and len(pool(1000)) == 1000  # larger than a block: direct


def test_a_block_is_never_handed_out_twice() -> None:
    pool = RandomPool(size=64)
    first = b"".join(pool(16) for _ in range(4))  # exactly one block
    second = b"".join(pool(16) for _ in range(4))
    assert first != second
    assert not set(first[i : i + 16] for i in range(0, 64, 16)) & set(
        second[i : i + 16] for i in range(0, 64, 16)
    )


def test_a_forked_child_does_not_repeat_the_parents_bytes() -> None:
    pool = RandomPool(size=4096)
    pool(16)  # the parent has a block with unread bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws next
        os.write(write, pool(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != pool(16)  # what the parent draws next: not the same bytes
