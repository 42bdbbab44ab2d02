"""The production line as a discrete-event simulation on Warp: the line model read from USD, batched
what-if studies, KPIs with confidence intervals, the live fork, and playback of a variant."""
