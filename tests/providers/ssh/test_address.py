"""Node addresses as a ``hosts:`` list writes them."""

from __future__ import annotations

import pytest

from runnerscale.providers.ssh.address import NodeAddress


@pytest.mark.parametrize(
    ("text", "host", "port", "known_hosts_name"),
    [
        ("node1.example.net", "node1.example.net", 22, "node1.example.net"),
        ("Node1.Example.NET", "node1.example.net", 22, "node1.example.net"),
        ("10.0.0.12:2222", "10.0.0.12", 2222, "[10.0.0.12]:2222"),
        ("10.0.0.12:22", "10.0.0.12", 22, "10.0.0.12"),
        ("[::1]:2222", "::1", 2222, "[::1]:2222"),
        ("[2001:db8::1]", "2001:db8::1", 22, "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1", 22, "2001:db8::1"),
    ],
)
def test_addresses_parse(text: str, host: str, port: int, known_hosts_name: str) -> None:
    address = NodeAddress.parse(text)
    assert (address.host, address.port) == (host, port)
    assert str(address) == text  # as configured
    assert address.known_hosts_name == known_hosts_name
    assert address == NodeAddress(host, port)


def test_an_address_made_from_parts_prints_canonically() -> None:
    assert str(NodeAddress("10.0.0.12", 2222)) == "10.0.0.12:2222"
    assert str(NodeAddress("::1", 2222)) == "[::1]:2222"
    assert str(NodeAddress("node1")) == "node1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("runner@node1", "names a user"),
        ("node1:", "ends with ':' but no port"),
        ("node1:ssh", "has port 'ssh'"),
        ("node1:0", "has port '0'"),
        ("[::1", "is not an address"),
        ("[node1]:22", "is not an IPv6 address in brackets"),
        ("node 1", "is not a host name or IP address"),
        ("ssh://node1", "is a URL"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        NodeAddress.parse(text)
