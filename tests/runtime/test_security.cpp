// The `security` property on real sockets: the key file from OpenOptions or the manifest,
// errors that name the file, and a keyless channel that hears nothing of a secured one.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "../support/key_files.hpp"
#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"

using namespace std::chrono_literals;
using tmc::test::manifest_for;

TEST_CASE("security: open() refuses a missing key file, naming it, whether the manifest or the options give it") {
  tmc::Manifest m = manifest_for("sec-missing", 0, "a");
  m.security = "encrypt";
  tmc::OpenOptions o;
  o.key_file = "/nonexistent/options.keys";
  tmc::Channel c;
  tmc::Status s = tmc::Channel::try_open(m, o, c);
  CHECK_FALSE(s.is_ok());
  CHECK_MESSAGE(s.message().find("key file /nonexistent/options.keys: cannot open") != std::string::npos, s.message());
  m.key_file = "/nonexistent/manifest.keys";  // the manifest's wins
  s = tmc::Channel::try_open(m, o, c);
  CHECK_MESSAGE(s.message().find("key file /nonexistent/manifest.keys: cannot open") != std::string::npos,
                s.message());
  m.key_file.clear();
  s = tmc::Channel::try_open(m, tmc::OpenOptions{}, c);
  CHECK_MESSAGE(s.message().find("no key file given") != std::string::npos, s.message());
}

TEST_CASE("security: members with the key exchange messages; a member without it hears none") {
  testkeys::KeyDir dir;
  tmc::OpenOptions keyed;
  keyed.key_file = dir.write("g.keys", {{1, 3}});
  tmc::Manifest m = manifest_for("sec-exchange", 0, "a");
  m.security = "encrypt";
  auto a = tmc::Channel::open(m, keyed);
  m.name = "b";
  auto b = tmc::Channel::open(m, keyed);
  tmc::Manifest plain = m;
  plain.name = "outsider";
  plain.security = "none";
  auto outsider = tmc::Channel::open(plain);
  REQUIRE(a.send("secret"));
  auto at_b = b.receive(3s);
  REQUIRE(at_b.has_value());
  CHECK(at_b->text() == "secret");
  REQUIRE(outsider.send("forged"));
  CHECK_FALSE(b.receive(300ms).has_value());
  CHECK(b.stats().drop_count(tmc::DropReason::auth) >= 1);
  // The outsider receives the datagram but can read no message from it.
  auto at_outsider = outsider.receive(300ms);
  CHECK((!at_outsider.has_value() || at_outsider->text() != "secret"));
}
