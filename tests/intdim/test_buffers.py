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


def test_scratch_hands_a_buffer_out_again_only_after_it_is_given_back():
    from intdim.buffers import Scratch

    pool = Scratch()
    cpu = torch.device("cpu")
    a = pool.take(1000, torch.float32, cpu)
    b = pool.take(1000, torch.float32, cpu)
    assert a.data_ptr() != b.data_ptr()  # both in use: two buffers
    pool.give(a)
    assert pool.take(1000, torch.float32, cpu).data_ptr() == a.data_ptr()
    assert pool.take(1000, torch.float32, cpu).data_ptr() not in (a.data_ptr(), b.data_ptr())


def test_scratch_keeps_no_more_than_its_limit(monkeypatch):
    from intdim.buffers import Scratch

    monkeypatch.setattr(Scratch, "MAX_BYTES", 4000)
    pool = Scratch()
    cpu = torch.device("cpu")
    a, b = pool.take(1000, torch.float32, cpu), pool.take(1000, torch.float32, cpu)
    pool.give(a, b)  # 4000 bytes each: only the first is kept
    assert pool._bytes == 4000
