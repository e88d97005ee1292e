"""Synchronizer addresses: one validator (RFC 1123 names, dotted quads 0-255, IPv6 in
brackets, ports 1-65535) for the answer file and the registration screen."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from installer import answers
from installer.addresses import parse_server, server_problem
from installer.answers import AnswerFileError

GOOD = [
    "sync.example.com",
    "sync",
    "sync.example.com:8443",
    "https://sync.example.com/engine",
    "http://10.0.0.1:80",
    "192.0.2.10",
    "[::1]:443",
    "[2001:db8::1]",
    "https://[2001:db8::1]:8443/api",
    "a-1.b-2.example",
    "h:1",
    "h:65535",
]
BAD = [
    "h:0",
    "h:99999",
    "h:",
    "h:-1",
    "1.2.3.999",
    "1.2.3",
    "256.1.1.1",
    "[::1",
    "[not-ipv6]:443",
    "::1",
    "-sync.example.com",
    "sync-.example.com",
    "sync..example.com",
    "a b",
    "user@sync",
    "ftp://sync",
    "sync?x=1",
    "x" * 64 + ".com",
]


@pytest.mark.parametrize("text", GOOD)
def test_good_addresses_are_accepted(text: str) -> None:
    assert server_problem(text) is None


@pytest.mark.parametrize("text", BAD)
def test_bad_addresses_are_refused(text: str) -> None:
    assert server_problem(text) is not None


def test_ipv6_in_brackets_keeps_host_and_port() -> None:
    address = parse_server("[::1]:443")
    assert (address.host, address.port, address.display) == ("::1", 443, "[::1]:443")


@given(st.integers(min_value=-10, max_value=200000))
def test_ports_are_accepted_exactly_from_1_to_65535(port: int) -> None:
    assert (server_problem(f"sync.example.com:{port}") is None) == (1 <= port <= 65535)


@given(st.lists(st.integers(min_value=0, max_value=999), min_size=4, max_size=4))
def test_dotted_quads_are_accepted_exactly_when_every_part_is_0_to_255(parts: list[int]) -> None:
    text = ".".join(map(str, parts))
    assert (server_problem(text) is None) == all(p <= 255 for p in parts)


@given(st.ip_addresses(v=6))
def test_every_ipv6_address_in_brackets_is_accepted(address: ipaddress.IPv6Address) -> None:
    assert server_problem(f"[{address}]:443") is None


@pytest.mark.parametrize("server", ["h:0", "1.2.3.999"])
def test_the_answer_file_refuses_a_bad_address(server: str) -> None:
    text = f"[registration]\nmode = 'synchronizer'\nserver = '{server}'\ntoken = 't'\n"
    with pytest.raises(AnswerFileError) as caught:
        answers.parse_answers(text.encode(), "a.toml")
    assert caught.value.problems[0].startswith(f"registration.server: '{server}' is not a host")


def test_the_answer_file_accepts_ipv6_in_brackets() -> None:
    text = "[registration]\nmode = 'synchronizer'\nserver = '[::1]:443'\ntoken = 't'\n"
    assert answers.parse_answers(text.encode(), "a.toml").server == "[::1]:443"
