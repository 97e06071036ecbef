"""Where we may send: https only (plain http only when the config allows it), and never to
a private, loopback, link-local or otherwise non-public address unless its network is
allowed in the config. The name is resolved and checked at send time, and the request
then goes to that checked address (the sender pins it), so DNS that changes between the
check and the connection (rebinding) cannot turn a webhook against our own network.

Config: WEBHOOK_ALLOW_HTTP (default false), WEBHOOK_ALLOW_NETWORKS (CIDRs, comma
separated, e.g. "10.1.2.0/24"; default none).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
URL_MAX_LEN = 2000
# Only global unicast is reachable by a webhook: `is_global` alone (Python 3.11) calls
# NAT64, 6to4 and the IPv4-compatible forms global, though each reaches an IPv4 address
# inside it (a NAT64 gateway turns 64:ff9b::a9fe:a9fe into 169.254.169.254).
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: never global, target unknown
WRAPS_IPV4_LOW32 = (ipaddress.ip_network("64:ff9b::/96"),      # NAT64, RFC 6052
                    ipaddress.ip_network("::ffff:0:0:0/96"),   # SIIT, RFC 6145
                    ipaddress.ip_network("::/96"))             # IPv4-compatible, deprecated


class UnsafeUrl(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name, for Host, SNI and the certificate
    port: int
    path: str  # path and query
    ip: str  # the checked address to connect to


def _flag(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def allowed_networks(config) -> list:
    raw = config.get("WEBHOOK_ALLOW_NETWORKS") or ""
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


def check_url(url, config) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, or UnsafeUrl saying why not."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX_LEN:
        raise UnsafeUrl(f"Нужен адрес до {URL_MAX_LEN} символов.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UnsafeUrl("Адрес не разобрать.") from None
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("Только https://.")
    if parts.scheme == "http" and not _flag(config.get("WEBHOOK_ALLOW_HTTP")):
        raise UnsafeUrl("Только https:// (http разрешается настройкой WEBHOOK_ALLOW_HTTP).")
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeUrl("Нужен адрес вида https://host/path, без логина и пароля.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 one leads to, if it wraps one (mapped, NAT64, 6to4, ...)."""
    if ip.ipv4_mapped:  # ::ffff:127.0.0.1 is 127.0.0.1
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if any(ip in net for net in WRAPS_IPV4_LOW32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
def check_target(url, config) -> None:
    """At subscription time: check_url, and a host written as an address (or `localhost`)
    must be acceptable too. Names are resolved only when sending (DNS may change); this
    refuses at once what can never be sent to, with the reason beside the field."""
    host = check_url(url, config)[1]
    if host == "localhost" or host.endswith(".localhost"):
        address = ipaddress.ip_address("127.0.0.1")
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
    if not _public(address, allowed_networks(config)):
        raise UnsafeUrl(f"{host} — адрес закрытой или локальной сети: запрещено "
                        "(разрешается настройкой WEBHOOK_ALLOW_NETWORKS).")


def _public(ip, networks) -> bool:
    if any(ip in net for net in networks):
        return True
    if ip.version == 6:
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return _public(inner, networks)
        if ip not in GLOBAL_UNICAST_V6 or ip in NAT64_LOCAL:
            return False
    return ip.is_global and not ip.is_multicast


def resolve(url: str, config) -> Target:
    """Resolve now; every address the name has must be acceptable (no mixing in one)."""
    scheme, host, port, path = check_url(url, config)
    # One answer whether the name is unknown or private, and no address in it: the
    # delivery log is read by the portal's admin, who must not map our network with it.
    refusal = UnsafeUrl(f"{host}: нет публичного адреса (имя не разрешается или ведёт в "
                        "закрытую сеть).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        log.info("webhook host %s does not resolve", host)
        raise refusal from None
    addresses = sorted({info[4][0] for info in infos})
    networks = allowed_networks(config)
    refused = [a for a in addresses if not _public(ipaddress.ip_address(a.split("%")[0]), networks)]
    if refused or not addresses:
        log.info("webhook host %s refused: it resolves to %s", host, ", ".join(refused) or "nothing")
        raise refusal
    return Target(scheme, host, port, path, addresses[0])
