"""Traffic simulation: the standard TNTP files (``tntp``), static user-equilibrium
assignment behind our own typed interface (``assignment``), the car network built from the city
model's roads (``network``), demand from its buildings or an OD matrix (``demand``), a
scenario's closures, flooded roads and new links (``closures``), scenarios as jobs
(``scenario``) and emergency routes on their results (``routing``, served by ``api``)."""
