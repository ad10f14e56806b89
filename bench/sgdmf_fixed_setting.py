"""SGDMF with ONE fixed setting for every fold (no per-fold tuning) vs Surprise SVD at its defaults,
MovieLens-100K u1..u5, fit + predict timed for both. Supplements bench_sgd.py, whose per-fold
validation grid is not counted in its time ratio: this shows the ratio holds without any tuning.
Run: python bench/sgdmf_fixed_setting.py (needs scikit-surprise; $RECFORGE_DATA or ../shared/data)."""
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from surprise import SVD, Dataset, Reader

import recforge as rf

D = str(Path(os.environ.get("RECFORGE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ml-100k") + "/"
names = ["user", "item", "rating", "ts"]
res = {"rf": [], "sp": [], "rf_t": 0.0, "sp_t": 0.0}
for k in range(1, 6):
    tr = pd.read_csv(f"{D}u{k}.base", sep="\t", names=names); te = pd.read_csv(f"{D}u{k}.test", sep="\t", names=names)
    shape = (944, 1683)
    m = sp.csr_matrix((tr.rating.astype(np.float32), (tr.user, tr.item)), shape=shape)
    t = time.perf_counter()
    model = rf.SGDMF(factors=32, lr=0.04, reg=0.12, lr_schedule="exponential", decay=0.05, epochs=20, clip=(1, 5), threads=2, seed=42)
    model.fit(m, progress=False)
    p = model.score(te.user.values, te.item.values, unknown="bias")
    res["rf_t"] += time.perf_counter() - t
    res["rf"].append(rf.evaluation.rmse(te.rating.values, p))
    t = time.perf_counter()
    data = Dataset.load_from_df(tr[["user", "item", "rating"]], Reader(rating_scale=(1, 5)))
    algo = SVD(random_state=0); algo.fit(data.build_full_trainset())
    ps = np.array([algo.predict(u, i).est for u, i in zip(te.user, te.item)])
    res["sp_t"] += time.perf_counter() - t
    res["sp"].append(float(np.sqrt(np.mean((ps - te.rating.values) ** 2))))
print("recforge fixed (f=32, lr=0.04, reg=0.12, exp decay 0.05, 20 epochs): RMSE %.4f per fold %s, %.3f s" % (np.mean(res["rf"]), np.round(res["rf"], 4), res["rf_t"]))
print("surprise SVD defaults: RMSE %.4f per fold %s, %.3f s" % (np.mean(res["sp"]), np.round(res["sp"], 4), res["sp_t"]))
print("delta %.4f, time ratio %.1fx" % (np.mean(res["sp"]) - np.mean(res["rf"]), res["sp_t"] / res["rf_t"]))
