"""The seed study's published figures (../shared/seed_study_zh.md), quoted for comparison.

These are the only typed numbers the report uses; everything else is read from run files.
"""
from __future__ import annotations

SEED = {"best_test_acc": 0.9895, "best_test_auc": 0.9995, "best_epoch": 24, "best_test_loss": 0.0292,
        "best_train_acc": 0.9782, "best_train_loss": 0.0631, "final_train_acc": 0.9799,
        "final_test_acc": 0.9870, "concat_test_acc": 0.9525,
        "siamese_claim": "> 97%", "parameters": 192_449, "epochs": 25}

# Seed §6: epoch, train loss, train acc, test loss, test acc, test ROC-AUC (lr stayed 8e-4).
_TABLE = """
1 0.6064 0.6519 0.4535 0.7805 0.8634
2 0.4254 0.8037 0.2940 0.8745 0.9475
3 0.3226 0.8641 0.2015 0.9200 0.9756
4 0.2529 0.8951 0.1638 0.9373 0.9843
5 0.2140 0.9171 0.1331 0.9505 0.9902
6 0.1873 0.9286 0.1312 0.9503 0.9909
7 0.1636 0.9373 0.0887 0.9665 0.9954
8 0.1464 0.9445 0.1008 0.9588 0.9940
9 0.1491 0.9438 0.0806 0.9723 0.9961
10 0.1310 0.9491 0.0712 0.9758 0.9969
11 0.1239 0.9543 0.0767 0.9713 0.9971
12 0.1139 0.9568 0.0823 0.9688 0.9978
13 0.1073 0.9599 0.0633 0.9795 0.9979
14 0.1023 0.9640 0.0580 0.9778 0.9980
15 0.0985 0.9621 0.0755 0.9728 0.9970
16 0.0914 0.9673 0.0597 0.9763 0.9978
17 0.0877 0.9666 0.0555 0.9818 0.9980
18 0.0857 0.9682 0.0485 0.9835 0.9984
19 0.0778 0.9726 0.0464 0.9843 0.9987
20 0.0719 0.9728 0.0521 0.9795 0.9987
21 0.0758 0.9720 0.0355 0.9858 0.9993
22 0.0727 0.9726 0.0550 0.9805 0.9981
23 0.0706 0.9757 0.0360 0.9878 0.9992
24 0.0631 0.9782 0.0326 0.9880 0.9994
25 0.0576 0.9799 0.0371 0.9870 0.9992
"""
SEED_HISTORY = [dict(zip(("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_auc"),
                         (int(r[0]), *map(float, r[1:])))) for r in (l.split() for l in _TABLE.strip().splitlines())]

