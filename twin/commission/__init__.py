"""Virtual commissioning: the simulated line served to control programs as an OPC-UA server, in free-run or
lock-step time, with inputs that can be forced."""
