"""The claims study (`mt study`): a study file of experiments (:mod:`mt.study.spec`), run as
ordinary `mt fit` runs that resume and skip (:mod:`mt.study.runner`), scored on test
(:mod:`mt.study.scoring`), turned into verdicts (:mod:`mt.study.claims`) and a report
(:mod:`mt.study.report`)."""
