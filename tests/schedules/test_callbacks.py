"""Framework callbacks, exercised only when the framework is installed."""

import pytest
import torch
from torch import nn

from prunekit.schedules import Gradual, SchedulePruner
from prunekit.schedules.callbacks import make_hf_callback, make_lightning_callback


class _HFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x, labels=None):
        logits = self.body(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class _ListData(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def test_hf_trainer_callback_prunes_on_schedule(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model = _HFNet()
    pruner = SchedulePruner(model.body, Gradual(start_step=0, end_step=6, frequency=2, final_sparsity=0.75))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=8, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_ListData(64),
                                   callbacks=[make_hf_callback(pruner)])
    trainer.train()
    assert pruner.current_step == 8
    assert [e.step for e in pruner.events] == [2, 4, 6]
    assert pruner.sparsity == pytest.approx(0.75, abs=1 / 100)


def test_lightning_callback_prunes_on_schedule(tmp_path):
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.body(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Module()
    pruner = SchedulePruner(module.body, Gradual(start_step=0, end_step=6, frequency=2, final_sparsity=0.75))
    data = torch.utils.data.TensorDataset(torch.randn(64, 6), torch.randint(0, 2, (64,)))
    trainer = pl.Trainer(max_steps=8, callbacks=[make_lightning_callback(pruner)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert [e.step for e in pruner.events] == [2, 4, 6]
    assert pruner.sparsity == pytest.approx(0.75, abs=1 / 100)


def test_missing_lightning_names_the_install_command():
    try:
        import lightning  # noqa: F401
        pytest.skip("lightning is installed")
    except ImportError:
        pass
    try:
        import pytorch_lightning  # noqa: F401
        pytest.skip("pytorch_lightning is installed")
    except ImportError:
        pass
    from prunekit.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="pip install lightning"):
        make_lightning_callback(SchedulePruner(nn.Linear(2, 2), Gradual(end_step=2, frequency=1)))
