#!/usr/bin/python3
"""Models whose every message carries a doc string, metadata and fields
unknown to graft's schema, for the codec's round-trip tests.

Usage: roundtrip_models.py [OUTDIR]   # default <repo>/testdata/roundtrip (committed)

Writes:
  everything.onnx    every kind of message graft's schema has: all attribute
                     types, subgraphs, sparse tensors, sequence/map/optional/
                     sparse types, quantization annotations, training info,
                     a model-local function; not runnable (a custom-domain op)
  mlp.onnx           a runnable classifier, input [batch,1,4,4] -> Flatten ->
                     Gemm -> Relu -> Gemm -> output [batch,3]
  mlp_external.onnx  the same with its weights in mlp_external.bin, whose
                     entries carry an extra key (checksum)

Every message gets, where empty, doc_string "doc(<path>)"; where the message
has metadata_props (in graft's schema), an entry key "key(<path>)", value
"meta(<path>)"; and unknown fields 9001 (bytes "unknown(<path>)"), 9002
(varint), 9003 (fixed32), 9004 (fixed64). <path> names the message
(model.graph.node[2].attribute[0]), so a test can tell which parts of a
model an edit kept (onnxtest.Marks). Fields graft's schema has but onnx 1.12's
does not (metadata_props outside ModelProto, overload, FunctionProto's
attribute_proto and value_info) are written as raw bytes after the known
fields, in field order, so the files are canonical: protobuf-go re-marshals
them to the same bytes.

Deterministic: reruns write identical files.
"""

import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
UNKNOWN = 9001  # field numbers no ONNX version uses

# metadata_props field numbers in graft's schema (ONNX 1.16+) of messages
# whose onnx 1.12 schema lacks them; ModelProto's is known to both.
NEWER_METADATA = {"GraphProto": 16, "NodeProto": 9, "ValueInfoProto": 4, "TensorProto": 16, "FunctionProto": 14}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire):
    return varint(field << 3 | wire)


def length_delimited(field, payload):
    return tag(field, 2) + varint(len(payload)) + payload


def unknown_fields(path):
    return (length_delimited(UNKNOWN, ("unknown(%s)" % path).encode())
            + tag(UNKNOWN + 1, 0) + varint(300)
            + tag(UNKNOWN + 2, 5) + struct.pack("<I", 0xDEADBEEF)
            + tag(UNKNOWN + 3, 1) + struct.pack("<Q", 0x0123456789ABCDEF))


def entry(key, value, path):
    """A StringStringEntryProto with unknown fields, serialized."""
    return onnx.StringStringEntryProto(key=key, value=value).SerializeToString() + unknown_fields(path)


def annotate(msg, path, newer=None):
    """Give msg and every message inside it a doc string, metadata and unknown
    fields. newer maps message paths to {field number: [serialized values]}
    of fields graft's schema knows and onnx 1.12's does not."""
    newer = newer or {}
    name = msg.DESCRIPTOR.name
    if "doc_string" in msg.DESCRIPTOR.fields_by_name and not msg.doc_string:
        msg.doc_string = "doc(%s)" % path
    if name == "ModelProto":
        msg.metadata_props.add(key="key(%s)" % path, value="meta(%s)" % path)
    for field, value in msg.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.label == field.LABEL_REPEATED:
            for i, m in enumerate(value):
                annotate(m, "%s.%s[%d]" % (path, field.name, i), newer)
        else:
            annotate(value, "%s.%s" % (path, field.name), newer)
    extra = dict(newer.get(path, {}))
    if name in NEWER_METADATA:
        number = NEWER_METADATA[name]
        extra[number] = extra.get(number, []) + [entry("key(%s)" % path, "meta(%s)" % path, path + ".metadata_props[0]")]
    raw = b""
    for number in sorted(extra):
        for payload in extra[number]:
            raw += length_delimited(number, payload)
    msg.MergeFromString(raw + unknown_fields(path))


def tensor_type(elem, dims, denotation=None):
    t = helper.make_tensor_type_proto(elem, dims)
    if denotation:
        t.denotation = denotation
    return t


def map_type(key, value_type):
    t = onnx.TypeProto()
    t.map_type.key_type = key
    t.map_type.value_type.CopyFrom(value_type)
    return t


def value(name, t):
    return onnx.ValueInfoProto(name=name, type=t)


def sub_graph(name):
    """A one-node subgraph: out = Identity(in)."""
    return helper.make_graph(
        [helper.make_node("Identity", ["%s_in" % name], ["%s_out" % name], name=name + "/Identity")],
        name,
        [helper.make_tensor_value_info("%s_in" % name, TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("%s_out" % name, TensorProto.FLOAT, [1])],
    )


def sparse(name):
    values = helper.make_tensor(name, TensorProto.FLOAT, [2], [1.5, -2.5])
    indices = helper.make_tensor(name + "_indices", TensorProto.INT64, [2], [1, 3])
    return helper.make_sparse_tensor(values, indices, [4])


def everything():
    # The input: a symbolic, a fixed and an unknown dimension, denotations.
    x_type = tensor_type(TensorProto.FLOAT, ["N", 4], "TENSOR")
    x_type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    x_type.tensor_type.shape.dim[1].denotation = "DATA_FEATURE"
    unknown_dim = tensor_type(TensorProto.FLOAT, ["N", 3])
    unknown_dim.tensor_type.shape.dim[1].Clear()

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 8, "W")  # raw_data
    w.data_location = TensorProto.DEFAULT  # present though default
    b = helper.make_tensor("B", TensorProto.FLOAT, [3], [0.5, -1, 2])  # float_data
    b.segment.begin, b.segment.end = 0, 3
    initializers = [
        w, b,
        helper.make_tensor("I64", TensorProto.INT64, [2], [-7, 1 << 40]),
        helper.make_tensor("I32", TensorProto.INT32, [2], [-3, 70000]),
        helper.make_tensor("U8", TensorProto.UINT8, [3], [0, 7, 255]),
        helper.make_tensor("F16", TensorProto.FLOAT16, [2], np.array([1, -2], np.float16).view(np.uint16).tolist(), raw=False),
        helper.make_tensor("D", TensorProto.DOUBLE, [2], [0.1, -1e300]),
        helper.make_tensor("U64", TensorProto.UINT64, [1], [1 << 63]),
        helper.make_tensor("S", TensorProto.STRING, [2], [b"a", b"\xff\x00"]),
    ]

    attrs = dict(
        a_float=2.5, a_int=-3, a_string=b"text", a_ints=[1, 2, 3], a_floats=[0.5, 1.5],
        a_strings=[b"x", b"y"],
        a_tensor=helper.make_tensor("a_tensor", TensorProto.INT64, [1], [9]),
        a_tensors=[helper.make_tensor("t0", TensorProto.FLOAT, [1], [1]), helper.make_tensor("t1", TensorProto.INT32, [1], [2])],
        a_graph=sub_graph("a_graph"),
        a_graphs=[sub_graph("g0"), sub_graph("g1")],
        a_sparse_tensor=sparse("a_sparse"),
        a_sparse_tensors=[sparse("s0"), sparse("s1")],
        a_type_proto=tensor_type(TensorProto.FLOAT, [2]),
        a_type_protos=[tensor_type(TensorProto.INT64, [1]), helper.make_sequence_type_proto(tensor_type(TensorProto.FLOAT, [1]))],
    )
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"], name="matmul"),
        helper.make_node("Add", ["XW", "B"], ["Y"], name="add"),
        helper.make_node("Everything", ["Y"], ["Z", "Zseq", "Zmap", "Zopt", "Zsparse"], name="everything",
                         domain="graft.test", **attrs),
        helper.make_node("Scale", ["Z"], ["out"], name="scale", domain="graft.fn", alpha=3.0),
    ]
    outputs = [
        value("out", tensor_type(TensorProto.FLOAT, ["N", 3])),
        value("Zseq", helper.make_sequence_type_proto(tensor_type(TensorProto.FLOAT, ["N", 3]))),
        value("Zmap", map_type(TensorProto.INT64, tensor_type(TensorProto.FLOAT, [3]))),
        value("Zopt", helper.make_optional_type_proto(tensor_type(TensorProto.FLOAT, [3]))),
        value("Zsparse", helper.make_sparse_tensor_type_proto(TensorProto.FLOAT, [4])),
    ]
    graph = helper.make_graph(
        nodes, "everything", [value("X", x_type)], outputs, initializers,
        value_info=[value("XW", tensor_type(TensorProto.FLOAT, ["N", 3])), value("Z", unknown_dim)],
        sparse_initializer=[sparse("SP")],
    )
    ann = graph.quantization_annotation.add(tensor_name="W")
    ann.quant_parameter_tensor_names.add(key="SCALE_TENSOR", value="B")

    # Scale(x; alpha) = x * alpha, alpha defaulting to 2 (attribute_proto).
    scale = helper.make_function(
        "graft.fn", "Scale", ["x"], ["y"],
        [helper.make_node("Constant", [], ["c"], name="scale/c", value_float=0.0),
         helper.make_node("Mul", ["x", "c"], ["y"], name="scale/mul")],
        [helper.make_opsetid("", 16)], ["alpha"])
    ref = scale.node[0].attribute[0]
    ref.ClearField("f")
    ref.ref_attr_name = "alpha"

    model = helper.make_model(
        graph, ir_version=8, producer_name="graft roundtrip_models.py", producer_version="1",
        domain="dev.graft", model_version=3, functions=[scale],
        opset_imports=[helper.make_opsetid("", 16), helper.make_opsetid("graft.test", 1), helper.make_opsetid("graft.fn", 1)],
    )
    training = model.training_info.add()
    training.initialization.CopyFrom(helper.make_graph(
        [helper.make_node("Constant", [], ["B_init"], name="init/c", value=helper.make_tensor("v", TensorProto.FLOAT, [3], [0, 0, 0]))],
        "initialization", [], [helper.make_tensor_value_info("B_init", TensorProto.FLOAT, [3])]))
    training.algorithm.CopyFrom(helper.make_graph(
        [helper.make_node("Identity", ["B"], ["B_new"], name="algo/id")],
        "algorithm", [], [helper.make_tensor_value_info("B_new", TensorProto.FLOAT, [3])]))
    training.initialization_binding.add(key="B", value="B_init")
    training.update_binding.add(key="B", value="B_new")

    # Fields onnx 1.12 does not know, annotated like the rest: the calling
    # node's and the function's overload, the function's attribute default
    # and value_info.
    alpha = helper.make_attribute("alpha", 2.0)
    annotate(alpha, "model.functions[0].attribute_proto[0]")
    vi = value("c", tensor_type(TensorProto.FLOAT, []))
    annotate(vi, "model.functions[0].value_info[0]")
    newer = {
        "model.functions[0]": {11: [alpha.SerializeToString()], 12: [vi.SerializeToString()], 13: [b""]},
        "model.graph.node[3]": {8: [b""]},
    }
    annotate(model, "model", newer)
    return model


def mlp():
    rng = np.random.RandomState(0)
    init = lambda name, *shape: numpy_helper.from_array((rng.standard_normal(shape) / 4).astype(np.float32), name)
    nodes = [
        helper.make_node("Flatten", ["input"], ["/Flatten_output_0"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["/Flatten_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"],
                         name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Gemm", ["/relu/Relu_output_0", "fc2.weight", "fc2.bias"], ["output"],
                         name="/fc2/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [init("fc1.weight", 8, 16), init("fc1.bias", 8), init("fc2.weight", 3, 8), init("fc2.bias", 3)],
        value_info=[helper.make_tensor_value_info("/relu/Relu_output_0", TensorProto.FLOAT, ["batch", 8])],
    )
    return helper.make_model(graph, ir_version=7, producer_name="graft roundtrip_models.py", producer_version="1",
                             opset_imports=[helper.make_opsetid("", 13)])


def externalize(model, location):
    """Moves every initializer's data to location; returns the file's bytes."""
    data = b""
    for t in model.graph.initializer:
        raw = t.raw_data
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(len(data))), ("length", str(len(raw))), ("checksum", "none")):
            t.external_data.add(key=k, value=v)
        data += raw
    return data


def main(argv):
    out = argv[0] if argv else os.path.join(REPO_ROOT, "testdata", "roundtrip")
    os.makedirs(out, exist_ok=True)

    write(os.path.join(out, "everything.onnx"), everything())

    model = mlp()
    annotate(model, "model")
    write(os.path.join(out, "mlp.onnx"), model)

    model = mlp()
    data = externalize(model, "mlp_external.bin")
    annotate(model, "model")
    write(os.path.join(out, "mlp_external.onnx"), model)
    with open(os.path.join(out, "mlp_external.bin"), "wb") as f:
        f.write(data)
    return 0


def write(path, model):
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    print("wrote", path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
