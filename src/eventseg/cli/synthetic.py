"""eventseg synthetic n_customers=2000 seed=0 out_dir=DIR: the built-in synthetic customers
(configs/make_synthetic.yaml).

months_after=M also simulates the M months after the cutoff (with planted migrations) and
writes DIR/events_full.parquet, the log to pass to `eventseg monitor data.path=...`.
"""

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.data.synthetic import generate_synthetic, write_synthetic


@hydra_app("make_synthetic")
def main(cfg: DictConfig) -> None:
    data = generate_synthetic(
        n_customers=cfg.n_customers,
        seed=cfg.seed,
        start=str(cfg.start),
        days=cfg.days,
        horizon_days=cfg.horizon_days,
        months_after=cfg.months_after,
        migration_share=cfg.migration_share,
    )
    paths = write_synthetic(data, to_absolute_path(cfg.out_dir))
    shares = data.truth["archetype"].value_counts(normalize=True)
    print(f"{len(data.events):,} events for {len(data.truth):,} customers, cutoff {data.cutoff}")
    print("archetypes: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    if "migration_date" in data.truth:
        print(
            f"{len(data.later_events):,} events in the {cfg.months_after} months after the cutoff, "
            f"{data.truth['migration_date'].notna().sum():,} planted migrations (truth: migration_date, "
            "archetype_after)"
        )
    if "events_full" in paths:
        print(f"history + later months: {paths['events_full']} (for eventseg monitor data.path=...)")
    print("wrote " + ", ".join(str(p) for p in paths.values()) + " (+ .json sidecars)")
