"""Regions and their geometry: the forms they arrive in (``forms``), boxes as numbers
(``boxes``), shapes and their pixels (``shapes``), the one prepared value every metric reads
(``prepared``) and the pixels of its objects (``pixels``)."""
