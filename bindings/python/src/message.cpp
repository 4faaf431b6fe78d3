// libTMC.Message: one delivered message.
//
// The object owns the C++ tmc::Message, which owns the pool buffer the datagram was
// received into. The class implements the buffer protocol over that buffer, so
// `msg.data` (a read-only memoryview) and `memoryview(msg)` give the payload without a
// copy; `msg.payload` is a bytes copy for code that wants an ordinary value. A memoryview
// keeps its Message alive, and a live Message keeps one buffer of its channel's bounded
// pool: keep payloads (bytes), not Messages, when storing many.
#include <pybind11/pybind11.h>

#include <cstdio>
#include <string>

#include <tmc/wire.hpp>

#include "common.hpp"

namespace tmc::python {

namespace {

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// A zero-length buffer still needs a valid address for the buffer protocol.
const std::uint8_t kEmpty[1] = {0};

}  // namespace

void register_message(py::module_& m) {
  py::class_<PyMessage>(m, "Message", py::buffer_protocol(),
                        "One delivered message. Payload as .payload (bytes) or .data (a zero-copy memoryview).")
      .def_buffer([](PyMessage& self) {
        const auto bytes = self.msg.payload();
        const std::uint8_t* data = bytes.empty() ? kEmpty : bytes.data();
        return py::buffer_info(const_cast<std::uint8_t*>(data), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(bytes.size())}, {static_cast<py::ssize_t>(1)},
                               /*readonly=*/true);
      })
      .def_property_readonly(
          "payload",
          [](const PyMessage& self) {
            const auto bytes = self.msg.payload();
            return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
          },
          "The payload, copied into a bytes object.")
      .def_property_readonly(
          "data", [](py::object self) { return py::memoryview(self); },
          "The payload as a read-only memoryview of the receive buffer (no copy).")
      .def_property_readonly(
          "text",
          [](const PyMessage& self) {
            const auto t = self.msg.text();
            PyObject* s = PyUnicode_DecodeUTF8(t.data(), static_cast<py::ssize_t>(t.size()), "strict");
            if (s == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::str>(s);
          },
          "The payload decoded as UTF-8 (raises UnicodeDecodeError if it is not).")
      .def_property_readonly(
          "sender", [](const PyMessage& self) { return self.msg.sender; },
          "The sender's member name, or its id in hex when this endpoint does not know the name.")
      .def_property_readonly(
          "sender_id", [](const PyMessage& self) { return self.msg.sender_id; },
          "FNV-1a hash of the sender's member name (stable across restarts).")
      .def_property_readonly(
          "epoch", [](const PyMessage& self) { return self.msg.epoch; },
          "The sender's incarnation (random per join and per update()).")
      .def_property_readonly(
          "seq", [](const PyMessage& self) -> py::object {
            if (!self.msg.has_seq) return py::none();
            return py::int_(self.msg.seq);
          },
          "Per-sender sequence number, or None when the channel's plan carries none (no ordering).")
      .def_property_readonly(
          "flags", [](const PyMessage& self) { return self.msg.flags; }, "Wire flags the message was sent with.")
      .def_property_readonly(
          "properties",
          [](const PyMessage& self) {
            py::dict d;
            d["reliability"] = (self.msg.flags & wire::kFlagReliable) != 0;
            d["error checking"] = (self.msg.flags & wire::kFlagCrc) != 0;
            d["ordered"] = (self.msg.flags & wire::kFlagUnordered) == 0;
            return d;
          },
          "The per-message properties carried in the header flags, by manifest key.")
      .def_property_readonly(
          "received_ns", [](const PyMessage& self) { return self.msg.received_ns; },
          "When the datagram was read from the socket (monotonic clock, ns).")
      .def("__len__", [](const PyMessage& self) { return self.msg.size(); })
      // Always true, even for an empty payload: `if msg:` after recv() must mean "a
      // message arrived", not "a non-empty one did" (recv returns None on timeout).
      .def("__bool__", [](const PyMessage&) { return true; })
      .def("__bytes__",
           [](const PyMessage& self) {
             const auto bytes = self.msg.payload();
             return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
           })
      .def("__repr__", [](const PyMessage& self) {
        constexpr std::size_t kShown = 32;
        const auto bytes = self.msg.payload();
        const std::size_t n = bytes.size() < kShown ? bytes.size() : kShown;
        const std::string shown =
            py::repr(py::bytes(reinterpret_cast<const char*>(bytes.data()), n)).cast<std::string>();
        std::string seq = self.msg.has_seq ? std::to_string(self.msg.seq) : std::string("None");
        return "<libTMC.Message from " + py::repr(py::str(self.msg.sender)).cast<std::string>() +
               " epoch=" + hex32(self.msg.epoch) + " seq=" + seq + " " + std::to_string(bytes.size()) + " bytes " +
               shown + (bytes.size() > kShown ? "..." : "") + ">";
      });
}

}  // namespace tmc::python
