"""Publication and transparency: what the TRE shows patients' representatives and the public.

Built only from released outputs, the policy and counts from the audit log:

- `catalogue`: the dataset catalogue in HealthDCAT-AP (RDF), checked against SHACL shapes;
- `register`: the public register of permits (EHDS Art. 58(1)(f)(g), Art. 61(4));
- `build`: the published folder the summaries service (Voila) reads, and nothing else;
- `summaries`: the Voila service for patients' representatives, in its own container.

The key holder's answer to "who used my data?" needs the pseudonym keys, so it lives on
the ingest host: `tre.ingest.who_used`.
"""
