"""Helpers shared by the command-line tests: run `ccstae` in-process, check one-line errors."""
import pytest

from ccstae import cli as ccstae_cli


@pytest.fixture
def cli(capsys):
    """cli(*argv) -> (exit code, stdout, stderr) of `ccstae ARGV`, run in this process."""

    def run(*argv):
        rc = ccstae_cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def one_line_error(rc, err, cmd, *words):
    """A bad input: exit code 2 and exactly one line `ccstae CMD: error: ...` naming every word."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ccstae {cmd}: error: "), err
    for w in words:
        assert w in lines[0], err


@pytest.fixture(name="one_line_error")
def one_line_error_fixture():
    return one_line_error
