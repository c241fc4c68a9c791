"""Write the built-in synthetic customers: python scripts/make_synthetic.py n_customers=2000 seed=0 out_dir=DIR"""

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.synthetic import generate_synthetic, write_synthetic


@hydra_app("make_synthetic")
def main(cfg: DictConfig) -> None:
    data = generate_synthetic(
        n_customers=cfg.n_customers,
        seed=cfg.seed,
        start=str(cfg.start),
        days=cfg.days,
        horizon_days=cfg.horizon_days,
    )
    paths = write_synthetic(data, to_absolute_path(cfg.out_dir))
    shares = data.truth["archetype"].value_counts(normalize=True)
    print(f"{len(data.events):,} events for {len(data.truth):,} customers, cutoff {data.cutoff}")
    print("archetypes: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    print("wrote " + ", ".join(str(p) for p in paths.values()) + " (+ .json sidecars)")


if __name__ == "__main__":
    main()
