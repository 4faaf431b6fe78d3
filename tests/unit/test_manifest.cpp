// Manifests: three spellings of one schema, shorthands, round trips, every kind of error
// with its exact text and position, update() and per-message manifests.
#include <doctest/doctest.h>

#include <string>

#include "runtime/manifest/internal.hpp"
#include "tmc/manifest.hpp"

using namespace tmc;

namespace {

Manifest parse_ok(const std::string& yaml) {
  Manifest m;
  Diagnostics d;
  const bool ok = parse_manifest(yaml, "m.yaml", m, d);
  INFO(d.to_string());
  REQUIRE(ok);
  return m;
}

// Every problem in the text, one per line, as the user would see them.
std::string errors_of(const std::string& yaml) {
  Manifest m;
  Diagnostics d;
  CHECK_FALSE(parse_manifest(yaml, "m.yaml", m, d));
  return d.to_string();
}

Value map(Value::Map m) { return Value(std::move(m)); }

}  // namespace

TEST_CASE("the property table matches the structs (Hana members vs rows)") {
  CHECK(detail::manifest_schema_problems() == std::vector<std::string>{});
  CHECK(detail::capabilities_schema_problems() == std::vector<std::string>{});
}

TEST_CASE("manifest_properties lists every property with key, alias and flags") {
  const auto& rows = manifest_properties();
  auto row = [&](std::string_view key) -> const PropertyInfo& {
    for (const auto& p : rows) {
      if (p.key == key) return p;
    }
    FAIL("no row " << key);
    return rows.front();
  };
  for (const char* key : {"id", "group", "group ordering", "point-to-point ordering", "reliability", "error checking",
                          "pacing", "flow control", "congestion control", "synchronicity", "duplexity", "multicast",
                          "members", "name", "port", "interface", "ttl", "loopback", "ordering window",
                          "ordering hold us", "max message bytes", "faults", "reliability.ack from", "ordered",
                          "reliability.messages", "flow control.window bytes", "flow control.slow timeout us",
                          "flow control.eject slow", "heartbeat us", "failure timeout us", "sequencer",
                          "pacing.rate bps", "pacing.coalesce us"}) {
    CAPTURE(key);
    CHECK(row(key).doc.size() > 5);
  }
  CHECK(row("group ordering").alias == "group_ordering");
  // Every property of Table 3 has its stage now: nothing is schema-only.
  for (const auto& p : rows) {
    CAPTURE(p.key);
    CHECK(p.available);
  }
  CHECK(row("reliability.ack k").available);
  CHECK(row("flow control.window bytes").alias == "flow_control.window_bytes");
  CHECK(row("flow control.window bytes").default_value == "4194304");
  CHECK(row("reliability.messages").default_value == "all");
  CHECK(row("heartbeat us").default_value == "100000");
  CHECK(row("failure timeout us").default_value == "1000000");
  CHECK(row("reliability").per_message);
  CHECK(row("error checking").per_message);
  CHECK(row("ordered").per_message);
  CHECK_FALSE(row("group").per_message);
  CHECK(row("port").default_value == "4747");
  CHECK(row("point-to-point ordering").type == "off | drop-stale | strict (or bool)");
}

TEST_CASE("YAML with paper keys, YAML with aliases, the builder and a Value map give the same struct") {
  const Manifest a = parse_ok(
      "id: 2PC\n"
      "group: 239.0.0.2\n"
      "port: 5000\n"
      "point-to-point ordering: strict\n"
      "ordering window: 32\n"
      "error checking: true\n"
      "max message bytes: 1200\n"
      "duplexity: send-only\n"
      "synchronicity: sync\n"
      "faults: {loss: 0.25, seed: 7}\n");
  const Manifest b = parse_ok(
      "id: 2PC\n"
      "group: '239.0.0.2'\n"
      "port: 5000\n"
      "point_to_point_ordering: strict\n"
      "ordering_window: 32\n"
      "error_checking: crc32c\n"
      "max_message_bytes: 1200\n"
      "duplexity: send_only\n"
      "synchronicity: sync\n"
      "faults: {loss: 0.25, seed: 7}\n");
  FaultSpec f;
  f.loss = 0.25;
  f.seed = 7;
  Manifest c = ManifestBuilder("2PC")
                   .group("239.0.0.2")
                   .port(5000)
                   .point_to_point_ordering(OrderingMode::strict)
                   .error_checking(true)
                   .max_message_bytes(1200)
                   .duplexity(Duplexity::send_only)
                   .synchronicity(Synchronicity::sync)
                   .faults(f)
                   .build();
  c.ordering_window = 32;
  Manifest d;
  Diagnostics diag;
  REQUIRE(manifest_from_value(map({{"id", "2PC"},
                                   {"group", "239.0.0.2"},
                                   {"port", 5000},
                                   {"point-to-point ordering", "strict"},
                                   {"ordering_window", 32},
                                   {"error checking", true},
                                   {"max message bytes", 1200},
                                   {"duplexity", "send-only"},
                                   {"synchronicity", "sync"},
                                   {"faults", map({{"loss", 0.25}, {"seed", 7}})}}),
                              d, diag));
  CHECK(a == b);
  CHECK(a == c);
  CHECK(a == d);
  CHECK(a.point_to_point_ordering == OrderingMode::strict);
  CHECK(a.faults.loss == doctest::Approx(0.25));
}

TEST_CASE("Listing 1 of the paper parses") {
  const Manifest m = parse_ok("id: '2PC'\ngroup: '239.0.0.2'\ngroup ordering: True\n");
  CHECK(m.id == "2PC");
  CHECK(m.group == "239.0.0.2");
  CHECK(m.group_ordering);
}

TEST_CASE("shorthands") {
  CHECK(parse_ok("id: a\npoint-to-point ordering: true\n").point_to_point_ordering == OrderingMode::drop_stale);
  CHECK(parse_ok("id: a\npoint-to-point ordering: false\n").point_to_point_ordering == OrderingMode::off);
  CHECK(parse_ok("id: a\npoint-to-point ordering: off\n").point_to_point_ordering == OrderingMode::off);
  CHECK(parse_ok("id: a\npoint-to-point ordering: drop-stale\n").point_to_point_ordering == OrderingMode::drop_stale);
  CHECK(parse_ok("id: a\npoint-to-point ordering: strict\n").point_to_point_ordering == OrderingMode::strict);

  const Manifest all = parse_ok("id: a\nreliability: true\n");
  CHECK(all.reliability.enabled);
  CHECK(all.reliability.ack_from.empty());
  const Manifest k = parse_ok("id: a\nreliability: {ack k: 2, max retries: 3}\n");
  CHECK(k.reliability.enabled);  // a map means enabled
  CHECK(k.reliability.ack_k == 2);
  CHECK(k.reliability.max_retries == 3);
  const Manifest off = parse_ok("id: a\nreliability: {enabled: false, ack fraction: 0.5}\n");
  CHECK_FALSE(off.reliability.enabled);
  CHECK(off.reliability.ack_fraction == doctest::Approx(0.5));
  const Manifest from = parse_ok("id: a\nmembers: [x, y]\nreliability:\n  ack from: [x]\n");
  CHECK(from.reliability.ack_from == std::vector<std::string>{"x"});

  CHECK(parse_ok("id: a\npacing: true\n").pacing.enabled);
  CHECK(parse_ok("id: a\npacing: {rate bps: 1000}\n").pacing.rate_bps == 1000);
  CHECK(parse_ok("id: a\npacing: {coalesce us: 30}\n").pacing.coalesce_us == 30);
  // Flow control needs reliability (its credit comes back with the acknowledgments).
  CHECK(parse_ok("id: a\nreliability: true\nflow control: true\n").flow_control.enabled);
  const Manifest q = parse_ok("id: a\nreliability: true\nflow control: {policy: quorum}\n");
  CHECK(q.flow_control.enabled);
  CHECK(q.flow_control.policy == "quorum");
  CHECK(q.flow_control.window_bytes == 4 * 1024 * 1024);
  const Manifest w = parse_ok(
      "id: a\nreliability: {messages: flagged}\nflow control: {window bytes: 65536, slow timeout us: 2000, eject slow: "
      "true}\n");
  CHECK(w.reliability.enabled);
  CHECK(w.reliability.messages == "flagged");
  CHECK(w.flow_control.enabled);
  CHECK(w.flow_control.window_bytes == 65536);
  CHECK(w.flow_control.slow_timeout_us == 2000);
  CHECK(w.flow_control.eject_slow);
  const Manifest g = parse_ok("id: a\nmembers: [x, y]\ngroup_ordering: true\nsequencer: y\nheartbeat_us: 5000\n"
                              "failure_timeout_us: 20000\n");
  CHECK(g.sequencer == "y");
  CHECK(g.heartbeat_us == 5000);
  CHECK(g.failure_timeout_us == 20000);
  CHECK(parse_ok("id: a\nerror checking: crc32c\n").error_checking);
  CHECK(parse_ok("id: a\nduplexity: receive-only\n").duplexity == Duplexity::receive_only);
  CHECK(parse_ok("id: 42\n").id == "42");
}

TEST_CASE("group derived from the id: 239.255.X.Y from FNV-1a, same for every member") {
  const std::string g = detail::derived_group("2PC");
  CHECK(g.rfind("239.255.", 0) == 0);
  CHECK(g == detail::derived_group("2PC"));
  CHECK(g != detail::derived_group("2PD"));
}

TEST_CASE("to_yaml parses back to the same manifest") {
  Manifest m;
  m.id = "odd \"id\"\twith: colons # and hashes";
  m.name = "n1";
  m.members = {"n1@127.0.0.1:5000", "n2@127.0.0.1:5001"};
  m.multicast = false;
  m.group = "239.9.9.9";
  m.port = 6000;
  m.interface = "eth3";
  m.ttl = 0;
  m.loopback = false;
  m.point_to_point_ordering = OrderingMode::strict;
  m.ordering_window = 7;
  m.ordering_hold_us = 123;
  m.heartbeat_us = 20'000;
  m.failure_timeout_us = 90'000;
  m.group_ordering = true;
  m.sequencer = "n2";
  m.reliability.enabled = true;
  m.reliability.ack_k = 2;
  m.reliability.max_retries = 3;
  m.reliability.messages = "flagged";
  m.error_checking = true;
  m.pacing.enabled = true;
  m.pacing.rate_bps = 1'000'000;
  m.pacing.burst_bytes = 4000;
  m.pacing.coalesce_us = 70;
  m.flow_control.enabled = true;
  m.flow_control.policy = "max";
  m.flow_control.window_bytes = 100'000;
  m.flow_control.slow_timeout_us = 3000;
  m.flow_control.eject_slow = true;
  m.congestion_control = "aimd";
  m.synchronicity = Synchronicity::sync;
  m.duplexity = Duplexity::receive_only;
  m.max_message_bytes = 999;
  m.faults.loss = 0.1;
  m.faults.corrupt = 1e-9;
  m.faults.delay_us = 5;
  m.faults.seed = 99;
  const std::string text = to_yaml(m);
  INFO(text);
  CHECK(parse_ok(text) == m);

  Manifest plain;
  plain.id = "x";
  CHECK(to_yaml(plain) == "id: \"x\"\n");  // defaults are left out
  CHECK(parse_ok(to_yaml(plain)) == plain);

  Manifest all = plain;
  all.reliability.enabled = true;
  CHECK(to_yaml(all) == "id: \"x\"\nreliability: true\n");
  CHECK(parse_ok(to_yaml(all)) == all);

  // Settings kept while a property is off: the map form must keep 'enabled: false'.
  Manifest off = plain;
  off.members = {"a", "b"};
  off.reliability.ack_from = {"b"};
  off.reliability.messages = "flagged";
  off.pacing.coalesce_us = 9;
  off.flow_control.policy = "quorum";
  off.flow_control.eject_slow = true;
  const std::string off_text = to_yaml(off);
  INFO(off_text);
  CHECK(parse_ok(off_text) == off);
  CHECK(off_text.find("enabled: false") != std::string::npos);

  // The message-set shorthand and the flow-control fields each survive alone.
  Manifest flagged = plain;
  flagged.reliability.enabled = true;
  flagged.reliability.messages = "flagged";
  CHECK(parse_ok(to_yaml(flagged)) == flagged);
  Manifest window = all;
  window.flow_control.enabled = true;
  window.flow_control.window_bytes = 2048;
  CHECK(parse_ok(to_yaml(window)) == window);
}

TEST_CASE("errors: exact text and position, and every problem at once") {
  CHECK(errors_of("id: a\ngruop: 239.0.0.1\n") == "m.yaml:2:8: unknown property 'gruop' (did you mean 'group'?)");
  CHECK(errors_of("id: a\nport: abc\n") == "m.yaml:2:7: 'port' expects int, got string \"abc\"");
  CHECK(errors_of("id: a\nport: 0\n") == "m.yaml:2:7: 'port' must be in 1..65535, got 0");
  CHECK(errors_of("id: a\nttl: 256\n") == "m.yaml:2:6: 'ttl' must be in 0..255, got 256");
  CHECK(errors_of("id: a\nreliability: {ack fraction: -0.5}\n") ==
        "m.yaml:2:29: 'reliability.ack fraction' must be in (0, 1], got -0.5");
  CHECK(errors_of("id: a\nfaults: {reorder: 1.01}\n") == "m.yaml:2:19: 'faults.reorder' must be in [0, 1], got 1.01");
  CHECK(errors_of("id: a\ngroup: 192.168.1.1\n") ==
        "m.yaml:2:8: 'group' must be an IPv4 multicast address (224.0.0.0/4), got \"192.168.1.1\"");
  CHECK(errors_of("id: a\ngroup: 239.0.0\n") ==
        "m.yaml:2:8: 'group' must be an IPv4 multicast address (224.0.0.0/4), got \"239.0.0\"");
  CHECK(errors_of("port: 1\n") == "m.yaml:1:1: missing required property 'id' (the channel id)");
  CHECK(errors_of("id: a\nmembers: [a, b]\nreliability: {ack k: 3}\n") ==
        "m.yaml:3:22: 'reliability.ack k' is 3 but 'members' lists only 2");
  CHECK(errors_of("id: a\nmembers: [a, b]\nreliability: {ack from: [a, z]}\n") ==
        "m.yaml:3:25: 'reliability.ack from' names 'z', which is not in 'members'");
  CHECK(errors_of("id: a\nreliability: {ack k: 1, ack fraction: 0.5}\n") ==
        "m.yaml:2:14: 'reliability': give at most one of 'ack from', 'ack fraction' and 'ack k'");
  CHECK(errors_of("id: a\nduplexity: half\n") ==
        "m.yaml:2:12: 'duplexity': half duplex (one direction at a time, switching) is not supported; use full, "
        "send-only or receive-only");
  CHECK(errors_of("id: a\ncongestion control: reno\n") ==
        "m.yaml:2:21: 'congestion control' must be one of none, aimd, cubic, got \"reno\"");
  // The rules between properties name the key they are about, at its place in the file.
  CHECK(errors_of("id: a\nflow control: true\n") ==
        "m.yaml:2:15: 'flow control' governs acknowledged messages (credit comes back with the acknowledgments); set "
        "'reliability' too");
  CHECK(errors_of("id: a\ncongestion control: cubic\n") ==
        "m.yaml:2:21: 'congestion control: cubic' needs acknowledgments to measure the network; set 'reliability'");
  CHECK(errors_of("id: a\nheartbeat us: 5000\nfailure timeout us: 5000\n") ==
        "m.yaml:3:21: 'failure timeout us' (5000) must be longer than 'heartbeat us' (5000), or every member would be "
        "declared failed between two heartbeats");
  CHECK(errors_of("id: a\nsequencer: x\n") == "m.yaml:2:12: 'sequencer' is set but 'group ordering' is not");
  CHECK(errors_of("id: a\nmembers: [x, y]\ngroup ordering: true\nsequencer: z\n") ==
        "m.yaml:4:12: 'sequencer' names 'z', which is not in 'members'");
  CHECK(errors_of("id: a\nreliability: {messages: some}\n") ==
        "m.yaml:2:25: 'reliability.messages' must be one of all, flagged, got \"some\"");
  CHECK(errors_of("id: a\nreliability: true\nflow control: {window bytes: 10}\n") ==
        "m.yaml:3:30: 'flow control.window bytes' must be in 1024..4294967296, got 10");
  // A value refused on its own is not judged again by the rules that relate it to others.
  CHECK(errors_of("id: a\nheartbeat us: 10\nfailure timeout us: 5\n") ==
        "m.yaml:2:15: 'heartbeat us' must be in 1000..60000000, got 10\n"
        "m.yaml:3:21: 'failure timeout us' must be in 2000..600000000, got 5");
  std::string crowd = "id: a\nmembers: [";
  for (int i = 0; i < 65; ++i) crowd += (i ? ", m" : "m") + std::to_string(i);
  {
    Manifest fits;
    Diagnostics none;
    CHECK(parse_manifest(crowd + "]\n", "m.yaml", fits, none));  // 65 members: 'max members' is 4096
  }
  CHECK(errors_of(crowd + "]\nmax members: 64\n") == "m.yaml:2:10: 'members' lists 65 members but 'max members' is 64; raise 'max members' to hold them all");
  CHECK(errors_of("id: a\nttl: 1\nttl: 2\n").find("'ttl' is given more than once") != std::string::npos);
  CHECK(errors_of("id: a\ngroup: [1\n") == "m.yaml:3:1: YAML syntax error: end of sequence flow not found");
  CHECK(errors_of("- a\n- b\n") == "m.yaml:1:1: a manifest must be a map of properties, got list");
  CHECK(errors_of("") == "m.yaml:1:1: a manifest must be a map of properties, got null");

  // Every problem, in file order, not just the first.
  const std::string many = errors_of("gruop: 1\nport: x\nttl: 999\nreliability: {ack k: -1}\n");
  CHECK(many ==
        "m.yaml:1:1: missing required property 'id' (the channel id)\n"
        "m.yaml:1:8: unknown property 'gruop' (did you mean 'group'?)\n"
        "m.yaml:2:7: 'port' expects int, got string \"x\"\n"
        "m.yaml:3:6: 'ttl' must be in 0..255, got 999\n"
        "m.yaml:4:22: 'reliability.ack k' must be at least 1, got -1");
}

TEST_CASE("diagnostics carry the key path") {
  Manifest m;
  Diagnostics d;
  CHECK_FALSE(parse_manifest("id: a\nreliability: {ack fraction: 2}\n", "m.yaml", m, d));
  REQUIRE(d.items().size() == 1);
  CHECK(d.items()[0].key == "reliability.ack fraction");
  CHECK(d.items()[0].where.file == "m.yaml");
  CHECK(d.items()[0].where.line == 2);
}

TEST_CASE("a Value map without a file is reported as <map>") {
  Manifest m;
  Diagnostics d;
  CHECK_FALSE(manifest_from_value(map({{"id", "a"}, {"group ordering", "yes"}}), m, d));
  CHECK(d.to_string() == "<map>: 'group ordering' expects bool, got string \"yes\"");
}

TEST_CASE("the builder validates like the parser and throws every problem") {
  try {
    (void)ManifestBuilder("").port(0).group("1.2.3.4").build();
    FAIL("build() accepted an invalid manifest");
  } catch (const Error& e) {
    CHECK(e.status().code() == Code::INVALID_MANIFEST);
    CHECK(e.status().message() ==
          "<builder>: 'port' must be in 1..65535, got 0\n"
          "<builder>: missing required property 'id' (the channel id)\n"
          "<builder>: 'group' must be an IPv4 multicast address (224.0.0.0/4), got \"1.2.3.4\"");
  }
  Manifest bad;
  Diagnostics d;
  CHECK_FALSE(validate_manifest(bad, d));
  CHECK(d.to_string() == "<manifest>: missing required property 'id' (the channel id)");
}

TEST_CASE("update_manifest changes only what it names, for good") {
  const Manifest base = parse_ok("id: 2PC\ngroup: 239.0.0.2\nreliability: {ack fraction: 0.5}\n");
  Manifest out;
  Diagnostics d;
  // Listing 1, line 10: c.update({'error checking': True})
  REQUIRE(update_manifest(base, map({{"error checking", true}}), out, d));
  CHECK(out.error_checking);
  CHECK(out.group == "239.0.0.2");
  CHECK(out.reliability.ack_fraction == doctest::Approx(0.5));

  // Nested maps merge into what is there; `false` turns a property off but keeps its settings.
  REQUIRE(update_manifest(base, map({{"reliability", map({{"max retries", 2}})}}), out, d));
  CHECK(out.reliability.enabled);
  CHECK(out.reliability.max_retries == 2);
  CHECK(out.reliability.ack_fraction == doctest::Approx(0.5));
  REQUIRE(update_manifest(base, map({{"reliability", false}}), out, d));
  CHECK_FALSE(out.reliability.enabled);
  CHECK(out.reliability.ack_fraction == doctest::Approx(0.5));

  // A bad update is refused whole, `out` untouched, every problem listed.
  Manifest untouched = base;
  Diagnostics bad;
  CHECK_FALSE(update_manifest(base, map({{"id", "other"}, {"ttl", 1000}}), untouched, bad));
  CHECK(untouched == base);
  CHECK(bad.to_string() ==
        "<map>: 'id' cannot be changed by update(): it names the channel (open a new channel instead)\n"
        "<map>: 'ttl' must be in 0..255, got 1000");
  // The combination rules see the merged result.
  Diagnostics combo;
  CHECK_FALSE(update_manifest(base, map({{"reliability", map({{"ack k", 2}})}}), untouched, combo));
  CHECK(combo.to_string() == "<map>: 'reliability': give at most one of 'ack from', 'ack fraction' and 'ack k'");
}

TEST_CASE("message manifests: the per-message subset") {
  MessageManifest mm;
  Diagnostics d;
  REQUIRE(message_manifest_from_value(map({{"reliability", true}}), mm, d));
  CHECK(mm.reliability == std::optional<bool>(true));
  CHECK_FALSE(mm.error_checking.has_value());
  REQUIRE(message_manifest_from_value(map({{"error_checking", true}, {"ordered", false}}), mm, d));
  CHECK(mm.error_checking == std::optional<bool>(true));
  CHECK(mm.ordered == std::optional<bool>(false));

  Diagnostics bad;
  MessageManifest untouched;
  CHECK_FALSE(message_manifest_from_value(
      map({{"group", "239.0.0.1"}, {"point-to-point ordering", false}, {"orderd", true}, {"reliability", 3}}),
      untouched, bad));
  CHECK(bad.to_string() ==
        "<map>: 'group' cannot be set per message: it is a property of the channel (change it for the channel with "
        "update())\n"
        "<map>: 'point-to-point ordering' cannot be set per message: it is a property of the channel (a message may "
        "opt out of it with 'ordered: false', or in with 'ordered: true' when the channel has 'ordered messages: "
        "flagged')\n"
        "<map>: unknown property 'orderd' (did you mean 'ordered'?)\n"
        "<map>: 'reliability' expects bool, got int 3");
  CHECK(untouched == MessageManifest{});
}

TEST_CASE("manifests: 'ordered messages: flagged' needs some ordering on the channel") {
  Diagnostics d;
  Manifest m;
  REQUIRE(parse_manifest("id: a\ngroup ordering: true\nordered messages: flagged\n", "m.yaml", m, d));
  CHECK(m.ordered_messages == "flagged");
  Diagnostics bad;
  Manifest none;
  CHECK_FALSE(parse_manifest("id: a\nordered messages: flagged\n", "m.yaml", none, bad));
  CHECK(bad.to_string().find("'ordered messages: flagged' lets messages opt in to the channel's ordering, but the "
                             "channel orders nothing") != std::string::npos);
  Diagnostics typo;
  CHECK_FALSE(parse_manifest("id: a\ngroup ordering: true\nordered messages: some\n", "m.yaml", none, typo));
  CHECK(typo.to_string().find("ordered messages") != std::string::npos);
}

TEST_CASE("hostile input never throws or crashes") {
  auto survives = [](const std::string& text) {
    Manifest m;
    Diagnostics d;
    CHECK_NOTHROW((void)parse_manifest(text, "h.yaml", m, d));
    return d.to_string();
  };
  CHECK(survives(std::string(20000, '[') + std::string(20000, ']')).find("h.yaml") != std::string::npos);
  CHECK(survives(std::string(5000, '{') + "a: 1" + std::string(5000, '}')).find("h.yaml") != std::string::npos);
  std::string deep = "id: a\nfaults:";
  for (int i = 0; i < 100; ++i) deep += "\n" + std::string(static_cast<std::size_t>(2 * (i + 1)), ' ') + "x:";
  CHECK(survives(deep).find("nesting deeper than") != std::string::npos);
  // Deeper than yaml-cpp's own limit: still the depth, and where the parser gave up.
  const std::string too_deep = survives("id: a\nmembers: " + std::string(3000, '[') + std::string(3000, ']'));
  CHECK(too_deep.rfind("h.yaml:2:", 0) == 0);
  CHECK(too_deep.find("nesting deeper than 32 levels") != std::string::npos);
  // "Billion laughs": aliases that expand exponentially are cut off.
  std::string laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    laughs += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) laughs += std::string(j ? ", " : "") + "*a" + std::to_string(i - 1);
    laughs += "]\n";
  }
  CHECK(survives(laughs).find("document too large") != std::string::npos);
  CHECK(survives("id: a\nport: 99999999999999999999999999\n") ==
        "h.yaml:2:7: 'port' expects int, got real 1e+26");
  CHECK(survives("id: a\nport: -9223372036854775808\n") ==
        "h.yaml:2:7: 'port' must be in 1..65535, got -9223372036854775808");
  CHECK(survives("id: a\nfaults: {loss: .nan}\n") == "h.yaml:2:16: 'faults.loss' must be in [0, 1], got .nan");
  CHECK(survives("? [a, b]\n: c\n").find("map keys must be plain words") != std::string::npos);
  CHECK_FALSE(survives(std::string("\0\xff\xfe\x01id: \x80", 9)).empty());
  // YAML itself refuses keys over 1024 characters; the error still names the place.
  CHECK(survives("id: a\n" + std::string(100000, 'x') + ": 1\n") == "h.yaml:2:100001: YAML syntax error: illegal map value");
  CHECK(survives("id: a\n" + std::string(1000, 'x') + ": 1\n").find("unknown property") != std::string::npos);
}

TEST_CASE("unicast fan-out: this member's name must be one of 'members'") {
  const std::string members = "multicast: false\nmembers: [left@127.0.0.1:6001, right@127.0.0.1:6002]\n";
  CHECK(errors_of("id: a\nname: lefty\n" + members) ==
        "m.yaml:2:7: 'name' is 'lefty', which is not in 'members' (left, right); with 'multicast: false' this "
        "member binds the address listed under its own name");
  CHECK(errors_of("id: a\n" + members) ==
        "m.yaml:2:12: 'name' is not set, which is not in 'members' (left, right); with 'multicast: false' this "
        "member binds the address listed under its own name");
  CHECK(parse_ok("id: a\nname: right\n" + members).name == "right");
  CHECK(parse_ok("id: a\nname: lefty\nmembers: [left@127.0.0.1:6001]\n").multicast);  // multicast: no binding
}

TEST_CASE("a directory is refused as a manifest file, by name") {
  Manifest m;
  Diagnostics d;
  CHECK_FALSE(load_manifest(TMC_SOURCE_DIR "/tests", m, d));
  CHECK(d.to_string() == std::string(TMC_SOURCE_DIR "/tests: is a directory, not a file"));
}
