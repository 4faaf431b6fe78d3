// libTMC.Plan and libTMC.PlannedStage: the compiled plan of a channel, read-only.
// str(plan) is Plan::to_string(), the same text `tmc plan` prints.
#include <pybind11/stl.h>

#include <string>

#include <tmc/plan.hpp>

#include "common.hpp"

namespace tmc::python {

namespace {

py::dict transport_dict(const TransportPlan& t) {
  py::dict d;
  d["group"] = t.group;
  d["port"] = t.port;
  d["interface"] = t.interface;
  d["interface_address"] = t.interface_address;
  d["ttl"] = t.ttl;
  d["loopback"] = t.loopback;
  d["multicast"] = t.multicast;
  d["peers"] = t.peers;
  d["udp_checksum"] = t.udp_checksum;
  d["gso"] = t.gso;
  d["gro"] = t.gro;
  d["mtu_bytes"] = t.mtu_bytes;
  d["max_payload_bytes"] = t.max_payload_bytes;
  d["batch"] = t.batch;
  return d;
}

}  // namespace

void register_plan(py::module_& m) {
  py::class_<PlannedStage>(m, "PlannedStage", "One stage of a compiled plan.")
      .def_readonly("kind", &PlannedStage::kind, "Registry kind, e.g. 'checksum.crc32c'.")
      .def_property_readonly(
          "params",
          [](const PlannedStage& s) {
            py::dict d;
            for (const auto& [k, v] : s.params) d[py::str(k)] = v;
            return d;
          },
          "Parameters, in YAML spelling.")
      .def_property_readonly(
          "placement", [](const PlannedStage& s) { return s.placement == Placement::offload ? "offload" : "software"; },
          "'software' (a stage in the pipeline) or 'offload' (done by the NIC or network).")
      .def_readonly("offload", &PlannedStage::offload, "With placement 'offload': which capability.")
      .def_readonly("reason", &PlannedStage::reason, "Which property asked for the stage, and why it is placed so.")
      .def("__repr__", [](const PlannedStage& s) {
        return "<libTMC.PlannedStage " + s.kind + " (" +
               (s.placement == Placement::offload ? "offload " + s.offload : std::string("software")) + ")>";
      });

  py::class_<Plan>(m, "Plan", "A channel's compiled plan (a snapshot: update() may replace it).")
      .def_readonly("channel_id", &Plan::channel_id)
      .def_readonly("channel_hash", &Plan::channel_hash)
      .def_readonly("member", &Plan::member, "This member's name.")
      .def_property_readonly("duplexity", [](const Plan& p) { return std::string(duplexity_name(p.duplexity)); })
      .def_property_readonly("synchronicity",
                             [](const Plan& p) { return std::string(synchronicity_name(p.synchronicity)); })
      .def_property_readonly(
          "transport", [](const Plan& p) { return transport_dict(p.transport); },
          "Group, port, interface, MTU, max payload bytes, ... as a dict.")
      .def_readonly("stages", &Plan::stages, "The stages, index 0 nearest the application.")
      .def_readonly("notes", &Plan::notes, "Decisions that are not stages.")
      .def_property_readonly("software_kinds", &Plan::software_kinds, "Kinds of the software stages, top to bottom.")
      .def("__str__", &Plan::to_string)
      .def("__repr__", [](const Plan& p) {
        std::string kinds;
        for (const auto& k : p.software_kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
        return "<libTMC.Plan channel '" + p.channel_id + "' member '" + p.member + "' stages [" + kinds + "]>";
      });
}

}  // namespace tmc::python
