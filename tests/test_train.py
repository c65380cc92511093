"""The trainer and its checkpoints: every process trains, the log has the per-quarter losses, a run
killed and restarted ends with exactly the weights of an uninterrupted one, corrupt checkpoints and
non-finite losses give clear errors, and two gloo processes train like one."""

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import corruptions
from corruptions.spectrum import PAPER_SPECTRUM
from models import UNet, UNetConfig
from spdbench.checkpoint import CHECKPOINTS, load_checkpoint, read_checkpoint
from spdbench.errors import UserError
from spdbench.train import METRICS, QUARTERS, TrainConfig, TrainState, train
from tests.conftest import become_rank, free_port

SHAPE = (1, 16, 16)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run on one thread: the tensors are tiny, and on a shared two-core machine OpenMP threads
    competing with other jobs make each step up to a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_process(name: str = "ddpm") -> corruptions.Process:
    """Process ``name`` for 1×16×16 images."""
    return corruptions.make_process(name, SHAPE, spectrum=PAPER_SPECTRUM)


def tiny_net(dropout: float = 0.1) -> UNet:
    """A seeded U-Net far smaller than the ``smoke`` size."""
    torch.manual_seed(0)
    config = UNetConfig(
        in_channels=1,
        image_size=16,
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_heads=1,
        dropout=dropout,
        scale_shift_norm=False,
        norm_groups=4,
    )
    return UNet(config)


def images() -> Tensor:
    """32 random images in [-1, 1]: four batches of 8 per epoch."""
    return torch.rand(32, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1


def settings(**changes: object) -> TrainConfig:
    """Six steps of batch 8 (crossing an epoch), checkpoints at steps 3 and 6, a log entry per step."""
    values: dict = dict(train_steps=6, batch=8, lr=1e-3, warmup=2, ema_decay=0.9, checkpoint_every=3, log_every=1)
    values.update(changes)
    return TrainConfig(**values)


def run(run_dir: Path, net: nn.Module | None = None, name: str = "ddpm", callback=None, **changes: object):
    """Train ``net`` (default a fresh tiny one) on the CPU into ``run_dir``."""
    net = tiny_net() if net is None else net
    config = settings(**changes)
    return train(make_process(name), net, images(), config, run_dir, callback, device="cpu", quiet=True)


def read_log(run_dir: Path) -> list[dict]:
    """The entries of the run's metrics log."""
    return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]


class Killed(Exception):
    """Stands for the process being killed."""


@pytest.mark.parametrize("name", sorted(corruptions.PROCESSES))
def test_every_process_trains(tmp_path: Path, name: str) -> None:
    result = run(tmp_path, name=name, train_steps=3)
    assert result.step == 3 and result.resumed_from == 0
    assert math.isfinite(result.metrics["loss"])
    saved = load_checkpoint(tmp_path)
    assert saved.step == 3 and saved.path == result.checkpoint
    for key, weight in result.net.state_dict().items():
        assert torch.equal(saved.model[key], weight)
        assert torch.equal(saved.ema[key], result.ema.shadow[key])
    assert saved.meta["process"]["process"] == name


def test_bf16_and_channels_last_train(tmp_path: Path) -> None:
    result = run(tmp_path, train_steps=2, bf16=True, channels_last=True)
    assert result.config.bf16 is True
    assert math.isfinite(result.metrics["loss"])


def test_bf16_is_off_by_default_on_the_cpu() -> None:
    assert settings().resolved(torch.device("cpu")).bf16 is False
    assert settings().resolved(torch.device("cuda")).bf16 is True


def test_metrics_log_has_quarter_losses(tmp_path: Path) -> None:
    run(tmp_path, train_steps=5, log_every=2, checkpoint_every=4, batch=16)
    entries = read_log(tmp_path)
    assert [e["step"] for e in entries] == [2, 4, 5]
    for entry in entries:
        assert set(entry) == {"step", "loss", "loss_quarters", "lr", "grad_norm", "images_per_s"}
        quarters = [q for q in entry["loss_quarters"] if q is not None]
        assert len(entry["loss_quarters"]) == QUARTERS and quarters
        assert all(math.isfinite(q) and q > 0 for q in quarters)
        # The mean loss lies between the quarter means it is a weighted average of.
        assert min(quarters) - 1e-6 <= entry["loss"] <= max(quarters) + 1e-6
        assert entry["grad_norm"] > 0 and entry["images_per_s"] > 0
    assert [e["lr"] for e in entries] == [1e-3, 1e-3, 1e-3]


def test_warmup_ramps_the_learning_rate(tmp_path: Path) -> None:
    run(tmp_path, train_steps=3, warmup=4)
    assert [e["lr"] for e in read_log(tmp_path)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4])


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path: Path) -> None:
    whole = run(tmp_path / "whole")

    def kill_at_step_5(state: TrainState) -> None:
        if state.step == 5:
            raise Killed

    with pytest.raises(Killed):
        run(tmp_path / "killed", callback=kill_at_step_5)
    assert load_checkpoint(tmp_path / "killed").step == 3  # mid-epoch: batch 3 of 4
    first_seconds = load_checkpoint(tmp_path / "killed").meta["train_seconds"]
    assert [e["step"] for e in read_log(tmp_path / "killed")] == [1, 2, 3, 4, 5]

    resumed = run(tmp_path / "killed")
    assert resumed.resumed_from == 3
    # Its training seconds are those of steps 1–3 (the first call, as its checkpoint holds them)
    # and 4–6 (the second); that a resumed run starts from the checkpoint's is tested below.
    assert resumed.seconds > first_seconds > 0
    for key, weight in whole.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[key], weight), key
    for key, shadow in whole.ema.shadow.items():
        assert torch.equal(resumed.ema.shadow[key], shadow), key
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    assert a.state.keys() == b.state.keys()
    assert all(torch.equal(a.state[key], b.state[key]) for key in a.state)
    # The log of the resumed run dropped the entries after the checkpoint and wrote them again.
    drop_speed = [{k: v for k, v in e.items() if k != "images_per_s"} for e in read_log(tmp_path / "whole")]
    assert [{k: v for k, v in e.items() if k != "images_per_s"} for e in read_log(tmp_path / "killed")] == drop_speed


def test_finished_run_is_not_trained_again_and_reports_its_training(tmp_path: Path) -> None:
    """A call that trains no step reports the run's last log entry and the training seconds its
    checkpoint holds, not those of the call."""
    first = run(tmp_path, train_steps=3)
    again = run(tmp_path, train_steps=3)
    assert again.resumed_from == 3 and again.metrics == first.metrics == read_log(tmp_path)[-1]
    assert again.seconds == load_checkpoint(tmp_path).meta["train_seconds"] > 0


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    run(tmp_path, train_steps=3)
    with pytest.raises(UserError, match="other settings.*lr 0.001 → 0.002"):
        run(tmp_path, train_steps=6, lr=2e-3)
    with pytest.raises(UserError, match="process"):
        run(tmp_path, train_steps=6, name="spd")


def test_truncated_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    result = run(tmp_path, train_steps=3)
    weights = result.checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="model.safetensors is truncated or corrupt") as error:
        load_checkpoint(tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="truncated or corrupt"):
        run(tmp_path, train_steps=6)


def test_altered_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    result = run(tmp_path, train_steps=3)
    state = result.checkpoint / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 1
    state.write_bytes(bytes(data))
    with pytest.raises(UserError, match="state.safetensors is corrupt: its SHA-256 differs"):
        load_checkpoint(tmp_path)


def test_checkpoint_without_manifest_is_a_user_error(tmp_path: Path) -> None:
    result = run(tmp_path, train_steps=3)
    (result.checkpoint / "manifest.json").unlink()
    with pytest.raises(UserError, match="manifest.json"):
        read_checkpoint(result.checkpoint)


def test_save_interrupted_by_a_kill_is_ignored(tmp_path: Path) -> None:
    run(tmp_path, train_steps=3)
    leftover = tmp_path / CHECKPOINTS / ".tmp-killed"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    assert load_checkpoint(tmp_path).step == 3
    run(tmp_path, train_steps=6)
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS).iterdir()) == ["step-000000006"]


def test_no_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path)


class Poisoned(nn.Module):
    """A network whose output turns to NaN once ``poisoned`` is set."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.poisoned = False

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.net(x, t)
        return out * math.nan if self.poisoned else out


def test_nonfinite_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    kept: dict[str, Tensor] = {}

    def poison_after_step_3(state: TrainState) -> None:
        if state.step == 3:
            kept.update({k: v.clone() for k, v in state.net.state_dict().items()})
            state.net.poisoned = True

    # Checked at step 6 (a log entry and a checkpoint), the first after the NaN of step 4: neither is written.
    with pytest.raises(UserError, match=r"non-finite loss at step 4; last good checkpoint: .*step-000000003"):
        run(tmp_path, Poisoned(tiny_net()), callback=poison_after_step_3, log_every=3)
    saved = load_checkpoint(tmp_path)
    assert saved.step == 3
    assert all(torch.equal(saved.model[k], v) for k, v in kept.items())
    assert [e["step"] for e in read_log(tmp_path)] == [3]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(UserError, match="batch must be at least 1.*lr must be positive"):
        TrainConfig(train_steps=1, batch=0, lr=0.0)
    with pytest.raises(UserError, match="checkpoint_every must be a multiple of log_every, got 15 and 10"):
        TrainConfig(train_steps=30, checkpoint_every=15, log_every=10)  # a resumed run would log steps 16-20


def test_images_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="N×1×16×16"):
        train(make_process(), tiny_net(), torch.zeros(8, 1, 8, 8), settings(), tmp_path, device="cpu", quiet=True)


def _distributed_worker(rank: int, world: int, port: int, run_dir: Path) -> None:
    """One rank of a gloo run started the way torchrun starts one: from environment variables."""
    become_rank(rank, world, port)
    run(run_dir, tiny_net(dropout=0.0), train_steps=3)


def test_two_processes_train_like_one(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_distributed_worker, args=(2, free_port(), tmp_path / "ddp"), nprocs=2)
    single = run(tmp_path / "single", tiny_net(dropout=0.0), train_steps=3)
    distributed = load_checkpoint(tmp_path / "ddp")
    for key, weight in single.net.state_dict().items():
        torch.testing.assert_close(distributed.model[key], weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(distributed.ema[key], single.ema.shadow[key], rtol=1e-5, atol=1e-6)
    losses = [e["loss"] for e in read_log(tmp_path / "ddp")]
    assert losses == pytest.approx([e["loss"] for e in read_log(tmp_path / "single")], rel=1e-5)
    assert distributed.meta["world_size"] == 2
    with pytest.raises(UserError, match="written by 2 processes, and resuming with 1"):
        run(tmp_path / "ddp", tiny_net(dropout=0.0), train_steps=6)
