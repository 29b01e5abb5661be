"""SA-Co evaluation: the SA-Co/Gold, Silver and Bronze image sets and SA-Co/VEval video.

* :mod:`eval.saco.metrics` -- per image-phrase pair counts and the classification-gated metrics
  (cgF1, IL_MCC, positive-micro F1, ...) of SAM 3's official image evaluator;
* :mod:`eval.saco.ap` -- COCO mask AP over image-phrase pairs (categories ignored);
* :mod:`eval.saco.video_metrics` -- video cgF1 over masklets and phrase HOTA (pHOTA);
* :mod:`eval.saco.dataset` -- readers of the released ground-truth JSON files;
* :mod:`eval.saco.predictions` -- COCO / YouTube-VIS style prediction files for the official tools.
"""
