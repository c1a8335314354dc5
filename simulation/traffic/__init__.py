"""Traffic simulation: the standard TNTP files (``tntp``), static user-equilibrium
assignment behind our own typed interface (``assignment``), and the car network built from the
city model's roads (``network``). Only ``network`` touches the database."""
