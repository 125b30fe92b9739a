"""What runs on pixels: teachers (frozen), students (trained), and the heads between them."""
