import torch

from intdim.buffers import ReusableBuffer


def test_reused_only_when_released():
    pool = ReusableBuffer()
    a = pool.get(100, torch.float32, torch.device("cpu"))
    view = a[:10]
    b = pool.get(100, torch.float32, torch.device("cpu"))
    assert b.data_ptr() != a.data_ptr()  # `view` still holds a's storage
    del a, view
    c = pool.get(100, torch.float32, torch.device("cpu"))
    assert c.data_ptr() == b.data_ptr()  # nothing else held b: handed out again


def test_not_reused_while_an_autograd_graph_saves_a_view():
    pool = ReusableBuffer()
    buf = pool.get(10, torch.float32, torch.device("cpu")).fill_(2.0)
    x = torch.ones(10, requires_grad=True)
    y = (x * buf[:10]).sum()  # mul saves the view for backward
    ptr = buf.data_ptr()
    del buf
    assert pool.get(10, torch.float32, torch.device("cpu")).data_ptr() != ptr
    y.backward()
    assert torch.equal(x.grad, torch.full((10,), 2.0))  # the saved values were not overwritten


def test_a_different_shape_or_dtype_allocates():
    pool = ReusableBuffer()
    a = pool.get(10, torch.float32, torch.device("cpu"))
    del a
    b = pool.get(10, torch.float64, torch.device("cpu"))
    assert b.dtype == torch.float64 and b.numel() == 10
