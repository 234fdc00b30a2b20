"""The tokens file: a half-written, unparsable or ambiguous file never changes who is signed in;
it is refused, logged (without tokens or digests) and reported, and the last good set stays."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

import pytest
import yaml

from app.identity import IdentityStore, create_token, hash_token, load_tokens_file


def rewrite(path: Path, text: str) -> None:
    """Replace the file's content and move its mtime on, as a later edit would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "tokens.yaml"
    return path, {name: create_token(path, name, ["approver"]) for name in ("alice", "bob")}


def assert_both_known(store: IdentityStore, tokens: dict[str, str]) -> None:
    assert store.lookup(tokens["alice"]).name == "alice"
    assert store.lookup(tokens["bob"]).name == "bob"
    assert store.names() == {"alice", "bob"}


def test_an_empty_file_keeps_the_identities_loaded_before(two):
    path, tokens = two
    store = IdentityStore(path)
    assert_both_known(store, tokens)
    for half_written in ("", "\n", "   \n# nothing yet\n"):
        rewrite(path, half_written)
        assert_both_known(store, tokens)


@pytest.mark.parametrize("broken", [
    "- {name: alice, roles: [approver], token_sha256: ",  # cut off mid-entry
    ": : : not yaml [",
    "just a string",
    "- {name: alice, roles: [king], token_sha256: " + "a" * 64 + "}",
    "- {name: alice, roles: [approver], token_sha256: " + "a" * 64 + ", extra: 1}",
])
def test_an_unparsable_file_keeps_the_identities_loaded_before(two, broken):
    path, tokens = two
    store = IdentityStore(path)
    rewrite(path, broken)
    assert_both_known(store, tokens)


def test_two_entries_with_one_digest_are_refused_naming_them(two, caplog):
    path, tokens = two
    store = IdentityStore(path)
    entries = yaml.safe_load(path.read_text())
    entries.append({"name": "mallory", "roles": ["admin"],
                    "token_sha256": hash_token(tokens["alice"])})
    caplog.set_level(logging.INFO, logger="app.identity")
    rewrite(path, yaml.safe_dump(entries))
    # Whose token is it? Neither answer is safe: keep the previous set.
    assert store.lookup(tokens["alice"]).name == "alice"
    assert store.by_name("mallory") is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "alice" in errors[0] and "mallory" in errors[0]
    assert hash_token(tokens["alice"]) not in errors[0]


def test_load_tokens_file_and_create_token_refuse_a_shared_digest(two):
    path, tokens = two
    entries = yaml.safe_load(path.read_text())
    entries.append({"name": "mallory", "roles": ["viewer"],
                    "token_sha256": hash_token(tokens["bob"])})
    rewrite(path, yaml.safe_dump(entries))
    with pytest.raises(ValueError, match=r"bob.*mallory|mallory.*bob") as caught:
        load_tokens_file(path)
    assert hash_token(tokens["bob"]) not in str(caught.value)
    with pytest.raises(ValueError, match="same token"):
        create_token(path, "carol", ["viewer"])
    assert "carol" not in path.read_text()


def test_a_refused_file_is_logged_once_without_tokens_or_digests(two, caplog):
    path, tokens = two
    store = IdentityStore(path)
    caplog.set_level(logging.INFO, logger="app.identity")
    # Someone pasted a raw token where its digest belongs: the log must not repeat it.
    rewrite(path, yaml.safe_dump([{"name": "alice", "roles": ["approver"],
                                   "token_sha256": tokens["alice"]}]))
    for _ in range(3):
        assert_both_known(store, tokens)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    logged = caplog.text
    assert tokens["alice"] not in logged and tokens["alice"][4:20] not in logged
    assert hash_token(tokens["bob"]) not in logged
    assert str(path) in errors[0].getMessage()


def test_a_yaml_error_is_logged_without_the_line_it_quotes(two, caplog):
    path, tokens = two
    store = IdentityStore(path)
    caplog.set_level(logging.INFO, logger="app.identity")
    rewrite(path, f"- {{name: alice, token_sha256: {tokens['alice']}, roles: [approver]\n"
                  f"- : {tokens['bob']}\n")
    assert_both_known(store, tokens)
    assert "ERROR" in caplog.text
    assert tokens["alice"] not in caplog.text and tokens["bob"] not in caplog.text


def test_the_next_good_file_is_loaded_after_a_refused_one(two):
    path, tokens = two
    store = IdentityStore(path)
    good = path.read_text()
    rewrite(path, "")
    assert_both_known(store, tokens)
    entries = [e for e in yaml.safe_load(good) if e["name"] != "bob"]
    rewrite(path, yaml.safe_dump(entries))
    assert store.lookup(tokens["bob"]) is None
    assert store.lookup(tokens["alice"]).name == "alice"


def test_an_explicit_empty_list_removes_everyone(two):
    """`[]` is written on purpose (revoke all), unlike an empty, half-written file."""
    path, tokens = two
    store = IdentityStore(path)
    rewrite(path, "[]\n")
    assert store.lookup(tokens["alice"]) is None and store.names() == set()


def test_on_reload_reports_each_file_version_once(two):
    path, tokens = two
    seen: list[bool] = []
    store = IdentityStore(path, on_reload=seen.append)
    assert seen == [True]
    rewrite(path, "")
    for _ in range(3):
        store.lookup(tokens["alice"])
    assert seen == [True, False]
    rewrite(path, ": broken [")
    store.lookup(tokens["alice"])
    assert seen == [True, False, False]
    create_token(path.with_name("other.yaml"), "x", ["viewer"])
    rewrite(path, path.with_name("other.yaml").read_text())
    assert store.names() == {"x"}
    assert seen == [True, False, False, True]


def test_a_bad_file_at_start_up_is_an_error_that_does_not_echo_it(two):
    path, tokens = two
    rewrite(path, yaml.safe_dump([{"name": "alice", "roles": ["approver"],
                                   "token_sha256": tokens["alice"]}]))
    seen: list[bool] = []
    with pytest.raises(ValueError) as caught:
        IdentityStore(path, on_reload=seen.append)
    assert str(path) in str(caught.value)
    # Neither the error nor anything chained to it (as a traceback would print) quotes it.
    printed = "".join(traceback.format_exception(caught.value))
    assert tokens["alice"] not in printed and "token_sha256" in printed
    assert seen == [False]
