"""folium builders: data in (already computed FeatureCollections), one map out. No queries, no SLA maths."""
