"""What the INT8 quantizer keeps in FP32: the nodes after the graph's last weighted layer."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="building test graphs needs onnx (the fit extra)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgead.export.quantize import fp32_tail, symmetric  # noqa: E402


def graph():
    """conv1 -> relu -> conv2 -> add(conv2, relu) -> pool_b; relu -> pool_a; concat(pool_a,
    pool_b) -> transpose: a feature network with two taps and a post-processing tail."""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    w0 = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w0")
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r"], ["s"], name="add"),
        helper.make_node("AveragePool", ["r"], ["pa"], name="pool_a", kernel_shape=[3, 3]),
        helper.make_node("AveragePool", ["s"], ["pb"], name="pool_b", kernel_shape=[3, 3]),
        helper.make_node("Concat", ["pa", "pb"], ["cat"], name="concat", axis=1),
        helper.make_node("Transpose", ["cat"], ["y"], name="transpose", perm=[0, 2, 3, 1]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, w0],
    )
    return helper.make_model(g)


def test_the_tail_after_the_last_weighted_layer_stays_fp32():
    # relu feeds conv2: quantized; add and the pools feed no weighted layer: kept in FP32
    assert fp32_tail(graph()) == ["add", "pool_a", "pool_b", "concat", "transpose"]


def test_a_graph_that_ends_in_a_weighted_layer_keeps_nothing():
    m = graph()
    del m.graph.node[3:]  # up to conv2
    m.graph.output[0].name = "c2"
    assert fp32_tail(m) == []


def qdq(zero_point: np.ndarray):
    """x -> QuantizeLinear -> DequantizeLinear -> y with the given zero point."""
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(zero_point, "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        inits,
    )
    return helper.make_model(g)


def test_tensorrt_takes_only_int8_graphs_whose_zero_points_are_zero():
    # NNCF's default preset: zero points of 0 (signed, or unsigned after a ReLU)
    assert symmetric(qdq(np.array(0, np.int8)))
    assert symmetric(qdq(np.array(0, np.uint8)))
    # onnxruntime's uint8 activations with a zero point, as its static quantizer writes them
    assert not symmetric(qdq(np.array(128, np.uint8)))
    assert not symmetric(qdq(np.array(3, np.int8)))
