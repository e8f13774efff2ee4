"""faceweave.parallel.each: per-item work side by side, every item on one torch thread."""
import threading

import pytest
import torch

from faceweave.parallel import each


def test_results_come_back_in_order_and_equal_the_one_thread_loop():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 12 * 12, 32)).eval()
    xs = [torch.randn(1, 8, 12, 12) for _ in range(7)]
    threads = torch.get_num_threads()
    with torch.no_grad():
        got = each(layer, xs, workers=3)
        torch.set_num_threads(1)
        try:
            want = [layer(x) for x in xs]
        finally:
            torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.get_num_threads() == threads           # the caller's thread count is back


def test_work_is_spread_over_threads_each_on_one_torch_thread():
    seen = []

    def probe(i):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return i * i

    assert each(probe, range(20), workers=2) == [i * i for i in range(20)]
    assert {n for _, n in seen} == {1}
    assert each(probe, [], workers=2) == []


def test_grad_mode_is_carried_into_the_workers():
    w = torch.ones(3, requires_grad=True)
    with torch.no_grad():
        assert not any(y.requires_grad for y in each(lambda x: w * x, [1.0, 2.0, 3.0], workers=2))
    ys = each(lambda x: (w * x).sum(), [1.0, 2.0], workers=2)
    torch.stack(ys).sum().backward()
    assert torch.equal(w.grad, torch.full((3,), 3.0))


def test_the_first_failing_item_raises_in_the_caller_after_the_rest_ran():
    done = []

    def fn(i):
        if i in (3, 5):
            raise ValueError(f"item {i}")
        done.append(i)
        return i

    with pytest.raises(ValueError, match="item 3"):
        each(fn, range(8), workers=2)
    assert sorted(done) == [0, 1, 2, 4, 6, 7]
