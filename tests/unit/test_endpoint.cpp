// IPv4 addresses and "ip:port" endpoints (src/primitives/common/endpoint.hpp): what is
// accepted, in host byte order, and everything refused.
#include <doctest/doctest.h>

#include <string>

#include "primitives/common/endpoint.hpp"

using tmc::detail::parse_ip_port;
using tmc::detail::parse_ipv4;

TEST_CASE("endpoint: dotted quads in host byte order") {
  std::uint32_t a = 0;
  REQUIRE(parse_ipv4("239.0.0.2", a));
  CHECK(a == 0xEF000002u);
  REQUIRE(parse_ipv4("0.0.0.0", a));
  CHECK(a == 0u);
  REQUIRE(parse_ipv4("255.255.255.255", a));
  CHECK(a == 0xFFFFFFFFu);
  REQUIRE(parse_ipv4("10.001.2.3", a));  // up to three digits a part
  CHECK(a == 0x0A010203u);
}

TEST_CASE("endpoint: anything but a strict dotted quad is refused and leaves the address") {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.4 ", " 1.2.3.4", "1..2.3", "1.2.3.",
                          ".1.2.3", "0001.2.3.4", "a.b.c.d", "1.2.3.4:80", "localhost", "-1.2.3.4", "1.2.3.+4"}) {
    std::uint32_t a = 0x12345678;
    CHECK_MESSAGE(!parse_ipv4(bad, a), bad);
    CHECK(a == 0x12345678u);
  }
}

TEST_CASE("endpoint: ip:port") {
  std::uint32_t a = 0;
  std::uint16_t p = 0;
  REQUIRE(parse_ip_port("127.0.0.1:4747", a, p));
  CHECK(a == 0x7F000001u);
  CHECK(p == 4747);
  REQUIRE(parse_ip_port("239.255.1.2:65535", a, p));
  CHECK(a == 0xEFFF0102u);
  CHECK(p == 65535);
  REQUIRE(parse_ip_port("10.0.0.1:1", a, p));
  CHECK(p == 1);
}

TEST_CASE("endpoint: a missing, zero, too large or decorated port, or a bad address, is refused") {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999999999",
                          "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:80 ", "127.0.0.1: 80", "127.0.0.1:8a",
                          ":80", "localhost:80", "1.2.3:80", "1.2.3.4::80", "[::1]:80", "300.0.0.1:80"}) {
    std::uint32_t a = 0;
    std::uint16_t p = 0;
    CHECK_MESSAGE(!parse_ip_port(bad, a, p), bad);
  }
}
