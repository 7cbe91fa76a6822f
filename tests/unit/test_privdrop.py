"""Dropping privileges for a child: one argv prefix, used by the tracker and the seeder."""

import pwd

import pytest

from boottorrentd.util.privdrop import setpriv_prefix


def test_no_user_means_no_prefix():
    assert setpriv_prefix(None) == []


def test_a_user_runs_the_command_with_its_ids_and_its_own_groups():
    nobody = pwd.getpwnam("nobody")

    prefix = setpriv_prefix("nobody")

    assert prefix[0].endswith("setpriv")
    assert prefix[1:] == [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                          "--init-groups", "--"]


def test_a_user_that_does_not_exist_is_a_key_error():
    with pytest.raises(KeyError):
        setpriv_prefix("no-such-user-bt")
