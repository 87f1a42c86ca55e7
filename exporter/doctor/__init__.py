"""``doctor``: what is wrong with a Prefect database right now, and what to do about it.

``observe`` reads the database (diagnostic queries from ``queries/diagnostics`` and some of the
catalog's collectors) into plain records; ``rules`` turns them into ranked ``Finding`` records;
``text``, ``jsonreport`` and ``html`` render a ``Report``. ``run`` ties them to the registry's
targets, ``command`` is the ``prefect-db-exporter doctor`` command line.
"""
