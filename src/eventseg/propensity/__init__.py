"""Propensities: candidate models per label (the representation's heads, RFM and aggregate
baselines, a stack), chosen on validation, reported honestly on test, saved without pickle.

- metrics: ROC-AUC, PR-AUC, Brier, lift, ECE, R², paired bootstrap of ROC-AUC differences
- calibration: Platt scaling, kept only where it helps (out-of-fold ECE)
- network: the multi-task MLP
- heads: PropensityHeads, every label from one input matrix
- baselines: the inputs (representation, aggregates, RFM) and the baselines' definitions
- selection: the candidates, the choice per label, PropensityModel
- evaluate: evaluate_propensity (fit, choose, test, verdicts)
- finetune: the encoder fine-tuned end to end with the labels (propensity.finetune; the `finetuned` candidate)
- persistence: JSON, weights-only tensors, allowlisted skops
"""

from eventseg.propensity.baselines import CandidateInputs, rfm_matrix
from eventseg.propensity.calibration import PlattCalibrator, choose_calibration
from eventseg.propensity.fit import evaluate_propensity, verdict_lines
from eventseg.propensity.heads import PropensityHeads
from eventseg.propensity.metrics import classification_metrics, paired_auc_differences, regression_metrics
from eventseg.propensity.persistence import HeadsFileError
from eventseg.propensity.selection import PropensityModel

__all__ = [
    "CandidateInputs", "HeadsFileError", "PlattCalibrator", "PropensityHeads", "PropensityModel",
    "choose_calibration", "classification_metrics", "evaluate_propensity", "paired_auc_differences",
    "regression_metrics", "rfm_matrix", "verdict_lines",
]
