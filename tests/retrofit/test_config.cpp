// The manifest's `retrofit:` section (src/retrofit/config.cpp): what it accepts, what it
// rejects and where, and that the rest of the file is the channel's manifest.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <string>

#include "retrofit/config.hpp"

using tmc::retrofit::Config;
using tmc::retrofit::parse_config;

namespace {

sockaddr_in addr(const char* ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

}  // namespace

TEST_CASE("retrofit: the section rewires by local port and destination; the rest is the manifest") {
  const std::string text =
      "id: app\n"
      "group: 239.1.2.3\n"
      "retrofit:\n"
      "  local ports: [9000, 9001]\n"
      "  destinations: [\"10.0.0.2:9000\", \"*:7000\", \"10.0.0.9:*\"]\n"
      "  unicast: fan-out\n"
      "  wait for members: 2\n"
      "  linger ms: 0\n"
      "reliability: true\n";
  Config c;
  std::string problems;
  REQUIRE_MESSAGE(parse_config(text, "m.yaml", c, problems), problems);
  CHECK(c.manifest.id == "app");
  CHECK(c.manifest.group == "239.1.2.3");
  CHECK(c.manifest.reliability.enabled);
  CHECK(c.matches_local_port(9001));
  CHECK_FALSE(c.matches_local_port(9002));
  CHECK(c.matches_destination(addr("10.0.0.2", 9000)));
  CHECK_FALSE(c.matches_destination(addr("10.0.0.3", 9000)));
  CHECK(c.matches_destination(addr("10.0.0.3", 7000)));
  CHECK(c.matches_destination(addr("10.0.0.9", 1234)));
  CHECK(c.unicast == tmc::retrofit::UnicastMode::fan_out);
  CHECK(c.wait_for_members == 2);
  CHECK(c.linger_ms == 0);
}

TEST_CASE("retrofit: every problem of the section is listed with its line") {
  const std::string text =
      "id: app\n"
      "retrofit:\n"
      "  local ports: [0, 70000, x]\n"
      "  destinations: [\"10.0.0.2\", \"*:*\"]\n"
      "  unicast: sometimes\n"
      "  lingr ms: 5\n";
  Config c;
  std::string problems;
  CHECK_FALSE(parse_config(text, "m.yaml", c, problems));
  CHECK(problems.find("m.yaml:3:") != std::string::npos);
  CHECK(problems.find("'0'") != std::string::npos);
  CHECK(problems.find("'70000'") != std::string::npos);
  CHECK(problems.find("'x'") != std::string::npos);
  CHECK(problems.find("m.yaml:4:") != std::string::npos);
  CHECK(problems.find("'10.0.0.2'") != std::string::npos);
  CHECK(problems.find("'*:*'") != std::string::npos);
  CHECK(problems.find("'sometimes'") != std::string::npos);
  CHECK(problems.find("m.yaml:6:3: unknown retrofit property 'lingr ms'") != std::string::npos);
  CHECK(problems.find("rewires nothing") == std::string::npos);  // it names sockets, badly
}

TEST_CASE("retrofit: a manifest problem keeps the line the user wrote it on") {
  const std::string text =
      "id: app\n"
      "retrofit:\n"
      "  local ports: [9000]\n"
      "\n"
      "gruop: 239.1.2.3\n";
  Config c;
  std::string problems;
  CHECK_FALSE(parse_config(text, "m.yaml", c, problems));
  CHECK(problems.find("m.yaml:5") != std::string::npos);
  CHECK(problems.find("gruop") != std::string::npos);
}

TEST_CASE("retrofit: a manifest without the section, or one that names no socket, is refused") {
  Config c;
  std::string problems;
  CHECK_FALSE(parse_config("id: app\n", "m.yaml", c, problems));
  CHECK(problems.find("no 'retrofit' section") != std::string::npos);
  CHECK_FALSE(parse_config("id: app\nretrofit:\n  unicast: addressed\n", "m.yaml", c, problems));
  CHECK(problems.find("rewires nothing") != std::string::npos);
}
