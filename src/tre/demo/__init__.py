"""Demo data for trying jupyter-tre end to end.

`tre.demo.silos.write_demo_silos` writes the demo "hospital silos": what a hospital
would export before pseudonymisation, a pure function of a seed, with every planted
direct identifier listed in `PLANTED.json`.
"""
