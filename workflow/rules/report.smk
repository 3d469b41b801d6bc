# Figures and the assembled report (wired to hccr.plots / hccr.report).


rule report:
    input:
        "reports/report.md",
        "reports/report.html",
