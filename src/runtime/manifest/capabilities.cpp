// Capability files: what the host NIC and the network can do. The same generic reader as
// manifests (reflect.hpp) with this file's rows.
#include "runtime/manifest/internal.hpp"
#include "runtime/manifest/reflect.hpp"
#include "runtime/manifest/yaml_value.hpp"
#include "tmc/capabilities.hpp"

BOOST_HANA_ADAPT_STRUCT(tmc::NicCapabilities, name, checksum_tx, checksum_rx, udp_gso, udp_gro, timestamping,
                        mtu_bytes, crypto_offload);
BOOST_HANA_ADAPT_STRUCT(tmc::NetworkCapabilities, multicast, sequencer);
BOOST_HANA_ADAPT_STRUCT(tmc::Capabilities, nic, network, source);

namespace tmc::detail {

namespace {

constexpr FieldMeta kNicRows[] = {
    {.field = "name", .key = "name", .alias = "name",
     .doc = "the interface these capabilities describe; a channel whose 'interface' is empty uses it"},
    {.field = "checksum_tx", .key = "tx", .alias = "tx",
     .doc = "the NIC computes UDP checksums on transmit", .group = "checksum offload",
     .group_alias = "checksum_offload"},
    {.field = "checksum_rx", .key = "rx", .alias = "rx",
     .doc = "the NIC verifies UDP checksums on receive and drops bad datagrams", .group = "checksum offload",
     .group_alias = "checksum_offload"},
    {.field = "udp_gso", .key = "udp gso", .alias = "udp_gso",
     .doc = "UDP generic segmentation offload (UDP_SEGMENT): one send hands the kernel many equal-sized "
            "datagrams for one destination. On by default: Linux (4.18 and later) segments in software when the NIC "
            "cannot; the transport checks that the socket takes it and, if the kernel refuses a send, goes back to "
            "one datagram per send (shell.gso_refused)"},
    {.field = "udp_gro", .key = "udp gro", .alias = "udp_gro",
     .doc = "UDP generic receive offload (UDP_GRO): one receive returns many datagrams of one sender in one "
            "buffer. The transport sets UDP_GRO on the group socket and cuts each buffer back into datagrams "
            "(shell.gro_reads counts the buffers that held several); an application thread's blocking receive "
            "then waits in poll rather than in the read"},
    {.field = "timestamping", .key = "timestamping", .alias = "timestamping",
     .doc = "hardware receive and transmit timestamps"},
    {.field = "mtu_bytes", .key = "mtu", .alias = "mtu_bytes",
     .doc = "link MTU in bytes; sets the largest datagram (IPv4 every host accepts 576)", .min = 576, .max = 65535},
    {.field = "crypto_offload", .key = "crypto offload", .alias = "crypto_offload",
     .doc = "the NIC or the link (inline IPsec, MACsec) authenticates and encrypts the group's datagrams with "
            "keys managed outside libTMC; a manifest's 'security' is then placed there and no software stage runs"},
};

constexpr FieldMeta kNetworkRows[] = {
    {.field = "multicast", .key = "multicast", .alias = "multicast",
     .doc = "IP multicast is routed between the members; false makes multicast channels fall back to unicast "
            "fan-out"},
    {.field = "sequencer", .key = "sequencer", .alias = "sequencer",
     .doc = "\"ip:port\" of an in-network sequencer (OUM) that group ordering can use; empty = none"},
};

constexpr FieldMeta kCapabilityRows[] = {
    {.field = "nic", .key = "nic", .alias = "nic", .doc = "the host's network interface"},
    {.field = "network", .key = "network", .alias = "network", .doc = "the network between the members"},
    {.field = "source", .key = "source", .alias = "source", .doc = "(filled in: the file read)", .hidden = true},
};

}  // namespace

template <>
struct Schema<NicCapabilities> {
  static std::span<const FieldMeta> fields() { return kNicRows; }
};
template <>
struct Schema<NetworkCapabilities> {
  static std::span<const FieldMeta> fields() { return kNetworkRows; }
};
template <>
struct Schema<Capabilities> {
  static std::span<const FieldMeta> fields() { return kCapabilityRows; }
  static constexpr std::string_view what = "a capability file";
};

std::vector<std::string> capabilities_schema_problems() {
  std::vector<std::string> out;
  schema_problems<Capabilities>("Capabilities", out);
  schema_problems<NicCapabilities>("NicCapabilities", out);
  schema_problems<NetworkCapabilities>("NetworkCapabilities", out);
  return out;
}

std::vector<PropertyInfo> capability_properties() {
  std::vector<PropertyInfo> out;
  property_rows<Capabilities>("", "", true, out);
  return out;
}

}  // namespace tmc::detail

namespace tmc {

Capabilities Capabilities::defaults() {
  Capabilities c;
  c.source = "(defaults)";
  return c;
}

bool parse_capabilities(std::string_view yaml_text, std::string_view filename, Capabilities& out, Diagnostics& diag) {
  Value v;
  if (!detail::yaml_to_value(yaml_text, filename, v, diag)) return false;
  Capabilities caps = Capabilities::defaults();
  caps.source = std::string(filename);
  if (v.is_null()) {  // an empty file declares nothing: the defaults hold
    out = std::move(caps);
    return true;
  }
  Diagnostics found;
  detail::Reader r(found, std::string(filename));
  r.remember("", v);
  detail::read_struct(v, caps, r, "", "map");
  if (v.is_map()) {
    detail::Checker c(found, r.file, &r.locations);
    for (const auto& d : found.items()) c.already.insert(d.key);
    detail::check_struct(caps, c, "");
    if (!caps.network.sequencer.empty()) {
      std::uint32_t addr = 0;
      std::uint16_t port = 0;
      if (!detail::parse_ip_port(caps.network.sequencer, addr, port)) {
        c.error("network.sequencer",
                "'network.sequencer' must be \"ip:port\", got " + detail::quote(caps.network.sequencer));
      }
    }
  }
  detail::append_in_file_order(diag, found);
  if (!found.ok()) return false;
  out = std::move(caps);
  return true;
}

bool load_capabilities(const std::string& path, Capabilities& out, Diagnostics& diag) {
  std::string text;
  if (!detail::read_text_file(path, text, diag)) return false;
  return parse_capabilities(text, path, out, diag);
}

}  // namespace tmc
