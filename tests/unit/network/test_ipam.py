"""IPAM: subnet picking, gateways, address allocation (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.network import ipam


def test_first_free_pool_is_dockers_default():
    assert str(ipam.pick_subnet([])) == "172.17.0.0/16"
    taken = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.5.0/24")]
    assert str(ipam.pick_subnet(taken)) == "172.19.0.0/16"


def test_pools_run_out_with_dockers_message():
    with pytest.raises(Conflict, match="non-overlapping IPv4 address pool"):
        ipam.pick_subnet([ipaddress.IPv4Network("0.0.0.0/0")])


def test_allocation_skips_gateway_and_reuses_released_addresses():
    pool = ipam.new_pool(ipaddress.IPv4Network("10.9.0.0/29"))
    assert pool.gateway == "10.9.0.1"
    pool, a = ipam.allocate(pool)
    pool, b = ipam.allocate(pool)
    assert (a, b) == ("10.9.0.2", "10.9.0.3")
    pool = ipam.release(pool, a)
    pool, c = ipam.allocate(pool)
    assert c == "10.9.0.2"
    for _ in range(3):
        pool, _addr = ipam.allocate(pool)
    with pytest.raises(Conflict):
        ipam.allocate(pool)


def test_user_gateway_must_be_inside_the_subnet():
    assert ipam.new_pool(ipaddress.IPv4Network("10.1.0.0/24"), "10.1.0.254").gateway == \
        "10.1.0.254"
    with pytest.raises(InvalidArgument):
        ipam.new_pool(ipaddress.IPv4Network("10.1.0.0/24"), "10.2.0.1")


def test_bad_subnets_are_refused():
    with pytest.raises(InvalidArgument, match="invalid CIDR address"):
        ipam.parse_subnet("10.0.0/33")
    with pytest.raises(InvalidArgument):
        ipam.parse_subnet("fd00::/64")


def test_mac_follows_the_address():
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
