// Python dicts -> tmc::Value, and the manifest helpers the package exposes.
//
// The C++ manifest reader does all the checking (unknown keys with a did-you-mean, types,
// ranges, combinations); this file only translates Python values faithfully so that it
// can: bool stays bool (tested before int, because bool is a subclass of int), int stays
// int (a float where an int is expected is the reader's type error, naming the key), and
// every node is located in "<dict>". What cannot be translated (a non-str key, bytes, a
// set, an arbitrary object) is refused here with a ManifestError naming the key.
#include <pybind11/stl.h>

#include <string>

#include "common.hpp"

namespace tmc::python {

namespace {

std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

Value located(Value v) {
  v.where.file = "<dict>";
  return v;
}

Value::Map to_map(py::handle obj, const std::string& path) {
  Value::Map out;
  out.reserve(static_cast<std::size_t>(PyDict_Size(obj.ptr())));
  for (auto item : py::reinterpret_borrow<py::dict>(obj)) {
    if (!PyUnicode_Check(item.first.ptr())) {
      raise_manifest_error(join(path, py::repr(item.first).cast<std::string>()),
                           "manifest keys must be str, not " + type_name(item.first));
    }
    std::string key = item.first.cast<std::string>();
    Value v = to_value(item.second, join(path, key));
    out.emplace_back(std::move(key), std::move(v));
  }
  return out;
}

}  // namespace

Value to_value(py::handle obj, const std::string& path) {
  PyObject* p = obj.ptr();
  if (obj.is_none()) return located(Value());
  if (PyBool_Check(p)) return located(Value(p == Py_True));
  if (PyLong_Check(p)) {
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(p, &overflow);
    if (overflow != 0) raise_manifest_error(path, "integer " + py::repr(obj).cast<std::string>() + " is out of range");
    if (x == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
    return located(Value(static_cast<std::int64_t>(x)));
  }
  if (PyFloat_Check(p)) return located(Value(PyFloat_AS_DOUBLE(p)));
  if (PyUnicode_Check(p)) return located(Value(obj.cast<std::string>()));
  if (PyDict_Check(p)) return located(Value(to_map(obj, path)));
  if (PyList_Check(p) || PyTuple_Check(p)) {
    Value::List out;
    std::size_t i = 0;
    for (auto item : py::reinterpret_borrow<py::sequence>(obj)) {
      out.push_back(to_value(item, path + "[" + std::to_string(i) + "]"));
      ++i;
    }
    return located(Value(std::move(out)));
  }
  raise_manifest_error(path, "a value of type '" + type_name(obj) +
                                 "' cannot be part of a manifest (use bool, int, float, str, list or dict)");
}

Value manifest_value(py::handle dict_or_none, const py::dict& kwargs) {
  Value::Map map;
  if (!dict_or_none.is_none()) {
    if (!PyDict_Check(dict_or_none.ptr())) {
      raise_status(Status(Code::INVALID_MANIFEST, "<dict>: a manifest must be a dict (or a path to a YAML file), not " +
                                                      type_name(dict_or_none)));
    }
    map = to_map(dict_or_none, "");
  }
  // Keyword arguments (snake_case aliases) come last; one that repeats a key of the dict
  // replaces it, the way dict(d, **kw) would.
  for (const auto& [k, v] : to_map(kwargs, "")) {
    bool replaced = false;
    for (auto& entry : map) {
      if (entry.first == k) {
        entry.second = v;
        replaced = true;
      }
    }
    if (!replaced) map.emplace_back(k, v);
  }
  return located(Value(std::move(map)));
}

MessageManifest message_manifest(py::handle dict) {
  if (!PyDict_Check(dict.ptr())) {
    raise_status(Status(Code::INVALID_MANIFEST,
                        "<dict>: a per-message manifest must be a dict (e.g. {'reliability': True}), not " +
                            type_name(dict)));
  }
  MessageManifest out;
  Diagnostics diag;
  if (!message_manifest_from_value(to_value(dict, ""), out, diag)) {
    raise_status(Status(Code::INVALID_MANIFEST, diag.to_string()));
  }
  return out;
}

void register_manifest(py::module_& m) {
  m.def(
      "properties",
      []() {
        py::list out;
        for (const PropertyInfo& p : manifest_properties()) {
          py::dict row;
          row["key"] = p.key;
          row["alias"] = p.alias;
          row["type"] = p.type;
          row["default"] = p.default_value;
          row["doc"] = p.doc;
          row["per_message"] = p.per_message;
          row["available"] = p.available;
          out.append(std::move(row));
        }
        return out;
      },
      "Every manifest property: key (paper spelling), alias (snake_case), type, default, doc, "
      "per_message, available.");

  m.def(
      "check_manifest",
      [](py::object manifest, py::kwargs kwargs) {
        const Value v = manifest_value(manifest, kwargs);
        Manifest out;
        Diagnostics diag;
        if (!manifest_from_value(v, out, diag)) raise_status(Status(Code::INVALID_MANIFEST, diag.to_string()));
        return to_yaml(out);
      },
      py::arg("manifest") = py::none(),
      "Check a manifest dict (plus keyword properties) without opening anything; return it as "
      "canonical YAML. Raises ManifestError naming every problem.");
}

}  // namespace tmc::python
