"""Telling people and programs: MQTT (with Home Assistant discovery) and notifications, both
subscribers of the incidents the events service publishes."""
